"""Host keys, generated once into ``.local/`` like the Functions host's secrets store.

Layout (``host-keys.json``)::

    {"masterKey": "...", "functionKeys": {"default": "..."},
     "systemKeys": {"durabletask_extension": "...", "eventgrid_extension": "..."}}

A function key or the master key opens ``function``-level routes; only the master key opens
``admin``-level routes and the admin API; extension webhooks take their system key (or the
master key).
"""

from __future__ import annotations

import json
import os
import secrets
from dataclasses import dataclass
from pathlib import Path

SYSTEM_KEYS = ("durabletask_extension", "eventgrid_extension")


def _new_key() -> str:
    return secrets.token_urlsafe(32)


@dataclass(frozen=True)
class HostKeys:
    master: str
    function_keys: dict[str, str]
    system_keys: dict[str, str]

    @property
    def default_function_key(self) -> str:
        return self.function_keys["default"]

    @classmethod
    def generate(cls) -> HostKeys:
        return cls(
            master=_new_key(),
            function_keys={"default": _new_key()},
            system_keys={name: _new_key() for name in SYSTEM_KEYS},
        )

    @classmethod
    def load_or_create(cls, path: Path) -> HostKeys:
        """Read the keys at ``path``, creating the file (mode 0600) on first use."""
        if path.exists():
            data = json.loads(path.read_text(encoding="utf-8"))
            keys = cls(
                master=data["masterKey"],
                function_keys=dict(data["functionKeys"]),
                system_keys=dict(data["systemKeys"]),
            )
            missing = [n for n in SYSTEM_KEYS if n not in keys.system_keys]
            if not missing and "default" in keys.function_keys:
                return keys
            keys = cls(
                master=keys.master,
                function_keys={"default": _new_key(), **keys.function_keys},
                system_keys={**{n: _new_key() for n in missing}, **keys.system_keys},
            )
        else:
            keys = cls.generate()
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(".tmp")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            json.dump(
                {
                    "masterKey": keys.master,
                    "functionKeys": keys.function_keys,
                    "systemKeys": keys.system_keys,
                },
                fh,
                indent=2,
            )
        tmp.replace(path)
        return keys

    def allows(self, level: str, presented: str | None) -> bool:
        """Whether ``presented`` opens a route of auth ``level`` (anonymous/function/admin)."""
        if level == "anonymous":
            return True
        if not presented:
            return False
        if secrets.compare_digest(presented, self.master):
            return True
        if level == "admin":
            return False
        return any(secrets.compare_digest(presented, k) for k in self.function_keys.values())

    def allows_system(self, extension: str, presented: str | None) -> bool:
        if not presented:
            return False
        if secrets.compare_digest(presented, self.master):
            return True
        expected = self.system_keys.get(extension)
        return expected is not None and secrets.compare_digest(presented, expected)
