"""The function app in a process of its own, served with a deployment's app settings.

``AppProcess`` runs ``python -m local serve --settings FILE``: a fresh interpreter, as a new
Functions worker is, whose environment is the platform's (the managed identity endpoint, the
trust store, the routes to the stand-ins) plus exactly the app settings given. Nothing of the
test process's own environment that names the app's settings leaks in. Its log is kept in
``state_dir/app.log``.
"""

from __future__ import annotations

import json
import os
import ssl
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import quote

from local.hosting.keys import HostKeys
from local.processes import stop_process

REPO = Path(__file__).resolve().parents[2]
# What a test process may have set that would change how the app is composed.
_APP_PREFIXES = ("MLOPS_", "AzureWebJobs", "APPLICATIONINSIGHTS_", "AZURE_", "IDENTITY_")


def call(
    url: str,
    body: Any = None,
    method: str | None = None,
    headers: Mapping[str, str] | None = None,
    timeout: float = 60.0,
    context: ssl.SSLContext | None = None,
) -> tuple[int, Any, dict[str, str]]:
    """One HTTP call: (status, JSON body or None, headers); ``context`` for HTTPS."""
    data = None if body is None else json.dumps(body).encode()
    request = urllib.request.Request(
        url, data=data, method=method,
        headers={"Content-Type": "application/json", **(headers or {})},
    )  # fmt: skip
    try:
        with urllib.request.urlopen(request, timeout=timeout, context=context) as answer:
            raw = answer.read()
            return answer.status, _json(raw), dict(answer.headers.items())
    except urllib.error.HTTPError as exc:
        raw = exc.read()
        return exc.code, _json(raw), dict(exc.headers.items())


def _json(raw: bytes) -> Any:
    try:
        return json.loads(raw) if raw else None
    except ValueError:
        return {"text": raw.decode("utf-8", "replace")}


@dataclass
class AppProcess:
    settings: Mapping[str, str]
    platform: Mapping[str, str]
    state_dir: Path
    blob_poll_interval: float = 1.0
    base_url: str = ""
    keys: HostKeys | None = None
    started_seconds: float = 0.0
    _proc: subprocess.Popen[bytes] | None = field(default=None, repr=False)

    def start(self, timeout: float = 120.0) -> AppProcess:
        self.state_dir.mkdir(parents=True, exist_ok=True)
        settings_file = self.state_dir / "app-settings.json"
        settings_file.write_text(json.dumps(dict(self.settings), indent=2), encoding="utf-8")
        env = {k: v for k, v in os.environ.items() if not k.startswith(_APP_PREFIXES)}
        env.update(self.platform)
        log = (self.state_dir / "app.log").open("ab")
        argv = [
            sys.executable, "-m", "local", "serve", "--settings", str(settings_file),
            "--state-dir", str(self.state_dir), "--port", "0", "--json",
            "--blob-poll-interval", str(self.blob_poll_interval),
        ]  # fmt: skip
        began = time.monotonic()
        self._proc = subprocess.Popen(
            argv, cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=log,
            stdin=subprocess.DEVNULL, start_new_session=True,
        )  # fmt: skip
        ready = threading.Event()
        info: dict[str, Any] = {}

        def pump() -> None:
            assert self._proc is not None and self._proc.stdout is not None
            for line in self._proc.stdout:
                if not ready.is_set() and line.startswith(b"{"):
                    info.update(json.loads(line))
                    ready.set()
                else:
                    log.write(line)
                    log.flush()
            ready.set()

        threading.Thread(target=pump, daemon=True).start()
        if not ready.wait(timeout) or not info:
            self.stop()
            raise RuntimeError(f"the app did not start; see {self.state_dir / 'app.log'}:\n"
                               + self.log_tail())  # fmt: skip
        self.started_seconds = time.monotonic() - began
        self.base_url = str(info["base_url"])
        self.keys = HostKeys.load_or_create(Path(info["keys_file"]))
        return self

    def stop(self) -> None:
        if self._proc is not None:
            stop_process(self._proc, grace=15)
            self._proc = None

    def log_tail(self, lines: int = 60) -> str:
        path = self.state_dir / "app.log"
        if not path.exists():
            return ""
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])

    @property
    def _keys(self) -> HostKeys:
        assert self.keys is not None, "the app is not running"
        return self.keys

    def api(self, path: str) -> str:
        """An HTTP function's URL (``path`` under /api/), with the default function key."""
        sep = "&" if "?" in path else "?"
        return f"{self.base_url}/api/{path}{sep}code={quote(self._keys.default_function_key)}"

    def eventgrid_url(self, function: str) -> str:
        """What an Event Grid subscription with an Azure Function destination posts to."""
        key = quote(self._keys.system_keys["eventgrid_extension"])
        return (
            f"{self.base_url}/runtime/webhooks/eventgrid?functionName={quote(function)}&code={key}"
        )

    def run_function(self, name: str) -> int:
        """Run a timer function now through the host's admin API (master key)."""
        status, _, _ = call(
            f"{self.base_url}/admin/functions/{quote(name)}", {}, "POST",
            {"x-functions-key": self._keys.master},
        )  # fmt: skip
        return status
