from __future__ import annotations

import json
import stat
from pathlib import Path

from local.hosting.keys import HostKeys


def test_keys_are_generated_once_and_reused(tmp_path: Path) -> None:
    path = tmp_path / "state" / "host-keys.json"
    first = HostKeys.load_or_create(path)
    second = HostKeys.load_or_create(path)
    assert first == second
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert len({first.master, first.default_function_key, *first.system_keys.values()}) == 4


def test_a_keys_file_missing_system_keys_is_completed(tmp_path: Path) -> None:
    path = tmp_path / "host-keys.json"
    path.write_text(
        json.dumps({"masterKey": "m", "functionKeys": {"default": "f"}, "systemKeys": {}})
    )
    keys = HostKeys.load_or_create(path)
    assert keys.master == "m" and keys.default_function_key == "f"
    assert set(keys.system_keys) == {"durabletask_extension", "eventgrid_extension"}


def test_auth_levels() -> None:
    keys = HostKeys.generate()
    fk, mk = keys.default_function_key, keys.master
    assert keys.allows("anonymous", None)
    assert keys.allows("function", fk) and keys.allows("function", mk)
    assert not keys.allows("function", None) and not keys.allows("function", "guess")
    assert keys.allows("admin", mk) and not keys.allows("admin", fk)
    eg = keys.system_keys["eventgrid_extension"]
    assert keys.allows_system("eventgrid_extension", eg)
    assert keys.allows_system("eventgrid_extension", mk)
    assert not keys.allows_system("eventgrid_extension", fk)
    assert not keys.allows_system("durabletask_extension", eg)
