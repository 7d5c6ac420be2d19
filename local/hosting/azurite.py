"""Azurite (the Azure Storage emulator) installed from npm into the repo's node_modules.

``Azurite.start()`` launches blob, queue and table services on 127.0.0.1 with ports chosen by
the OS, reads the ports Azurite reports, and health-checks them; ``stop()`` stops it by PID.

With ``certificate`` (a PEM certificate and key) it serves HTTPS, and with ``oauth`` it also
accepts Entra ID bearer tokens (Azurite's ``--oauth basic``: issuer, audience and lifetime are
checked, not the signature), which is how identity-based connections are tried locally.
``accounts`` (name → key) replaces the development account with named accounts.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import threading
from dataclasses import dataclass, field
from pathlib import Path

from local.processes import stop_process, wait_for_port

REPO_ROOT = Path(__file__).resolve().parents[2]

# The well-known development account; Azurite accepts only this key by default.
ACCOUNT = "devstoreaccount1"
ACCOUNT_KEY = (
    "Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw=="
)

_LISTENING = re.compile(
    r"Azurite (Blob|Queue|Table) service is successfully listening at \S+:(\d+)"
)


class AzuriteError(RuntimeError):
    """Azurite could not be found or did not come up."""


def azurite_executable() -> Path:
    exe = REPO_ROOT / "node_modules" / ".bin" / "azurite"
    if not exe.exists():
        raise AzuriteError(
            f"Azurite is not installed at {exe.relative_to(REPO_ROOT)}: run `make setup` "
            "(it runs `npm ci` in the repository)"
        )
    if shutil.which("node") is None:
        raise AzuriteError("Node.js is not on PATH; Azurite needs it")
    return exe


@dataclass
class Azurite:
    """One Azurite process. ``location=None`` keeps everything in memory."""

    location: Path | None = None
    debug_log: Path | None = None
    certificate: tuple[Path, Path] | None = None  # (cert PEM, key PEM): serve HTTPS
    oauth: bool = False
    accounts: dict[str, str] = field(default_factory=dict)
    ports: dict[str, int] = field(default_factory=dict)
    _proc: subprocess.Popen[str] | None = None
    _output: list[str] = field(default_factory=list)

    @property
    def scheme(self) -> str:
        return "https" if self.certificate else "http"

    @property
    def blob_endpoint(self) -> str:
        return f"{self.scheme}://127.0.0.1:{self.ports['blob']}/{ACCOUNT}"

    @property
    def queue_endpoint(self) -> str:
        return f"{self.scheme}://127.0.0.1:{self.ports['queue']}/{ACCOUNT}"

    @property
    def table_endpoint(self) -> str:
        return f"{self.scheme}://127.0.0.1:{self.ports['table']}/{ACCOUNT}"

    @property
    def connection_string(self) -> str:
        return (
            f"DefaultEndpointsProtocol={self.scheme};AccountName={ACCOUNT};AccountKey={ACCOUNT_KEY};"
            f"BlobEndpoint={self.blob_endpoint};QueueEndpoint={self.queue_endpoint};"
            f"TableEndpoint={self.table_endpoint};"
        )

    @property
    def pid(self) -> int | None:
        return self._proc.pid if self._proc else None

    def start(self, timeout: float = 30.0) -> Azurite:
        exe = azurite_executable()
        args = [
            str(exe),
            "--skipApiVersionCheck",
            "--disableTelemetry",
            "--loose",
            "--blobHost", "127.0.0.1", "--blobPort", "0",
            "--queueHost", "127.0.0.1", "--queuePort", "0",
            "--tableHost", "127.0.0.1", "--tablePort", "0",
        ]  # fmt: skip
        if self.location is None:
            args.append("--inMemoryPersistence")
        else:
            self.location.mkdir(parents=True, exist_ok=True)
            args += ["--location", str(self.location)]
        if self.debug_log is not None:
            args += ["--debug", str(self.debug_log)]
        if self.certificate is not None:
            args += ["--cert", str(self.certificate[0]), "--key", str(self.certificate[1])]
        if self.oauth:
            if self.certificate is None:
                raise AzuriteError("Azurite's OAuth mode needs HTTPS: give a certificate")
            args += ["--oauth", "basic"]
        env = dict(os.environ)
        if self.accounts:
            env["AZURITE_ACCOUNTS"] = ";".join(f"{k}:{v}" for k, v in self.accounts.items())
        self._proc = subprocess.Popen(
            args,
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            text=True,
            start_new_session=True,
        )
        ready = threading.Event()
        threading.Thread(target=self._pump, args=(ready,), daemon=True).start()
        if not ready.wait(timeout) or len(self.ports) != 3:
            tail = "".join(self._output[-20:])
            self.stop()
            raise AzuriteError(f"Azurite did not start within {timeout:.0f}s:\n{tail}")
        for service, port in self.ports.items():
            if not wait_for_port("127.0.0.1", port, 10):
                self.stop()
                raise AzuriteError(f"Azurite {service} port {port} does not accept connections")
        return self

    def _pump(self, ready: threading.Event) -> None:
        assert self._proc is not None and self._proc.stdout is not None
        for line in self._proc.stdout:
            self._output.append(line)
            if len(self._output) > 200:
                del self._output[:100]
            m = _LISTENING.search(line)
            if m:
                self.ports[m.group(1).lower()] = int(m.group(2))
                if len(self.ports) == 3:
                    ready.set()
        # The process ended: wake the waiter so it reports instead of waiting out its timeout.
        if not ready.is_set():
            self.ports.clear()
            ready.set()

    def stop(self) -> None:
        if self._proc is not None:
            stop_process(self._proc)
            self._proc = None

    def __enter__(self) -> Azurite:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
