"""Host keys, generated once into ``.local/`` like the Functions host's secrets store.

Layout (``host-keys.json``)::

    {"masterKey": "...", "functionKeys": {"default": "..."},
     "systemKeys": {"durabletask_extension": "...", "eventgrid_extension": "..."},
     "functionSpecificKeys": {"on_dashboard_get": {"dashboard": "..."}}}

As in Azure: a host function key or the master key opens every ``function``-level route; a
function-specific key opens only that function's routes (the dashboard's key can read the
dashboard and do nothing else); only the master key opens ``admin``-level routes and the admin
API; an extension's webhooks take its system key or the master key.
"""

from __future__ import annotations

import base64
import binascii
import json
import os
import secrets
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

SYSTEM_KEYS = ("durabletask_extension", "eventgrid_extension")


def _new_key() -> str:
    return secrets.token_urlsafe(32)


def _matches(presented: str, expected: str) -> bool:
    return secrets.compare_digest(
        presented.encode("utf-8", "surrogatepass"), expected.encode("utf-8", "surrogatepass")
    )


@dataclass(frozen=True)
class HostKeys:
    master: str
    function_keys: dict[str, str]
    system_keys: dict[str, str]
    function_specific: dict[str, dict[str, str]] = field(default_factory=dict)

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
                function_specific={
                    str(f): dict(named) for f, named in data.get("functionSpecificKeys", {}).items()
                },
            )
            missing = [n for n in SYSTEM_KEYS if n not in keys.system_keys]
            if not missing and "default" in keys.function_keys:
                return keys
            keys = cls(
                master=keys.master,
                function_keys={"default": _new_key(), **keys.function_keys},
                system_keys={**{n: _new_key() for n in missing}, **keys.system_keys},
                function_specific=keys.function_specific,
            )
        else:
            keys = cls.generate()
        keys.save(path)
        return keys

    def save(self, path: Path) -> None:
        """Write the keys to ``path`` (mode 0600, replaced atomically)."""
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(".tmp")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            json.dump(
                {
                    "masterKey": self.master,
                    "functionKeys": self.function_keys,
                    "systemKeys": self.system_keys,
                    "functionSpecificKeys": self.function_specific,
                },
                fh,
                indent=2,
            )
        tmp.replace(path)

    def function_key(self, function: str, name: str, path: Path) -> str:
        """The key ``name`` of ``function`` alone, created (and saved to ``path``) on first use."""
        named = self.function_specific.setdefault(function, {})
        if name not in named:
            named[name] = _new_key()
            self.save(path)
        return named[name]

    def allows(self, level: str, presented: str | None, function: str | None = None) -> bool:
        """Whether ``presented`` opens a route of auth ``level`` (anonymous/function/admin)
        of ``function``."""
        if level == "anonymous":
            return True
        if not presented:
            return False
        if _matches(presented, self.master):
            return True
        if level == "admin":
            return False
        own = self.function_specific.get(function or "", {}).values()
        return any(_matches(presented, k) for k in (*self.function_keys.values(), *own))

    def allows_system(self, extension: str, presented: str | None) -> bool:
        """Whether ``presented`` opens ``extension``'s webhooks: its system key or the master."""
        if not presented:
            return False
        if _matches(presented, self.master):
            return True
        expected = self.system_keys.get(extension)
        return expected is not None and _matches(presented, expected)


def presented_key(query: Mapping[str, str], headers: Mapping[str, str]) -> str | None:
    """The key a request presents: ``code=``, ``x-functions-key``, or a Basic password (how a
    URL's credentials arrive)."""
    key = query.get("code") or headers.get("x-functions-key")
    if key:
        return key
    auth = headers.get("Authorization", "")
    if auth[:6].lower() != "basic ":
        return None
    try:
        return base64.b64decode(auth[6:].strip(), validate=True).decode().partition(":")[2]
    except (binascii.Error, UnicodeDecodeError):
        return None
