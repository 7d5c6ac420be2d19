"""A local SMTP server (aiosmtpd) that writes every message it receives to ``<dir>/mail/*.eml``.

Runs in a background thread of the calling process, on 127.0.0.1 and a free port unless one
is given. ``stop()`` followed by ``start()`` reuses the same port, which is how tests play
"the mail server was down and came back". Also runnable on its own:
``python -m local.hosting.smtp --dir .local --port 0`` prints the port and serves until interrupted.
"""

from __future__ import annotations

import argparse
import contextlib
import signal
import sys
import threading
import time
import uuid
from pathlib import Path
from types import TracebackType
from typing import Any

from local.processes import free_port

DEFAULT_DIR = ".local"


class _MailWriter:
    """aiosmtpd handler: one ``.eml`` file per accepted message, written atomically."""

    def __init__(self, mail_dir: Path) -> None:
        self.mail_dir = mail_dir

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        content = envelope.original_content or envelope.content
        if isinstance(content, str):
            content = content.encode("utf-8")
        # Time first so a directory listing sorts oldest first; the uuid keeps names unique
        # across restarts and several servers sharing one directory.
        now = time.time_ns()
        stamp = time.strftime("%Y%m%dT%H%M%S", time.gmtime(now / 1e9))
        name = f"{stamp}.{now % 10**9:09d}-{uuid.uuid4().hex[:8]}.eml"
        self.mail_dir.mkdir(parents=True, exist_ok=True)
        tmp = self.mail_dir / f".{name}.tmp"
        tmp.write_bytes(content)
        tmp.replace(self.mail_dir / name)
        return "250 Message accepted for delivery"


class LocalSmtpServer:
    """Start/stop an aiosmtpd server on loopback; messages land in ``mail_dir``.

    ``port=None`` (or 0) picks a free port on the first ``start()`` and keeps it for restarts.
    """

    def __init__(
        self,
        directory: Path | str = DEFAULT_DIR,
        *,
        host: str = "127.0.0.1",
        port: int | None = None,
    ) -> None:
        self.mail_dir = Path(directory) / "mail"
        self.host = host
        self._port = port or None
        self._controller: Any = None

    @property
    def port(self) -> int:
        if self._port is None:
            raise RuntimeError("the SMTP server has no port yet: call start() first")
        return self._port

    @property
    def running(self) -> bool:
        return self._controller is not None

    def start(self) -> LocalSmtpServer:
        """Start serving (no-op when running); returns ``self`` once it accepts connections."""
        if self._controller is not None:
            return self
        from aiosmtpd.controller import Controller

        self.mail_dir.mkdir(parents=True, exist_ok=True)
        if self._port is None:
            self._port = free_port()
        controller = Controller(
            _MailWriter(self.mail_dir),
            hostname=self.host,
            port=self._port,
            ready_timeout=10.0,
            enable_SMTPUTF8=True,
        )
        controller.start()
        self._controller = controller
        return self

    def stop(self) -> None:
        """Stop serving; the port is kept so ``start()`` serves on it again. Safe to call twice."""
        controller, self._controller = self._controller, None
        if controller is not None:
            controller.stop()

    def messages(self) -> list[Path]:
        """The ``.eml`` files received so far, oldest first."""
        if not self.mail_dir.is_dir():
            return []
        return sorted(self.mail_dir.glob("*.eml"))

    def __enter__(self) -> LocalSmtpServer:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Local SMTP server writing .eml files.")
    parser.add_argument("--dir", default=DEFAULT_DIR, help="messages go to DIR/mail/")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=0, help="0 picks a free port")
    args = parser.parse_args(argv)
    stopped = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stopped.set())
    with LocalSmtpServer(args.dir, host=args.host, port=args.port or None) as server:
        print(f"SMTP on {server.host}:{server.port}, writing to {server.mail_dir}", flush=True)
        with contextlib.suppress(KeyboardInterrupt):
            stopped.wait()
    return 0


if __name__ == "__main__":
    sys.exit(main())
