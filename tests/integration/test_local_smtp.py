"""The local SMTP server and SmtpNotifier's reply handling against real aiosmtpd servers."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from aiosmtpd.controller import Controller

from adapters.errors import BadInputError, TransientError
from adapters.notify import Email, SmtpNotifier
from local.hosting.smtp import LocalSmtpServer
from local.processes import free_port, stop_process, wait_for_port

pytestmark = pytest.mark.integration
REPO = Path(__file__).resolve().parents[2]


def notifier(port: int) -> SmtpNotifier:
    return SmtpNotifier(
        "127.0.0.1", port, sender="a@example.com", recipients=["ops@example.com"], timeout=5
    )


def test_restart_serves_on_the_same_port_and_keeps_earlier_messages(tmp_path: Path) -> None:
    server = LocalSmtpServer(tmp_path).start()
    try:
        port = server.port
        notifier(port).send(Email("m1", "first", "1"))
        server.stop()
        server.stop()  # stopping twice is harmless
        with pytest.raises(TransientError):
            notifier(port).send(Email("m2", "lost while down", "2"))
        server.start()
        assert server.port == port
        notifier(port).send(Email("m3", "third", "3"))
    finally:
        server.stop()
    subjects = [p.read_text().split("Subject: ")[1].splitlines()[0] for p in server.messages()]
    assert subjects == ["first", "third"]
    assert all(p.parent == tmp_path / "mail" for p in server.messages())


class _Refuse:
    def __init__(self, reply: str) -> None:
        self.reply = reply

    async def handle_RCPT(
        self, server: Any, session: Any, envelope: Any, address: str, options: Any
    ) -> str:
        return self.reply


@pytest.fixture(params=["550 5.1.1 no such mailbox", "451 4.3.0 try again later"])
def refusing(request: pytest.FixtureRequest) -> Iterator[tuple[int, str]]:
    port = free_port()
    controller = Controller(_Refuse(request.param), hostname="127.0.0.1", port=port)
    controller.start()
    yield port, request.param
    controller.stop()


def test_permanent_refusals_are_bad_input_and_temporary_ones_transient(
    refusing: tuple[int, str],
) -> None:
    port, reply = refusing
    expected = BadInputError if reply.startswith("5") else TransientError
    with pytest.raises(expected):
        notifier(port).send(Email("m1", "s", "t"))


def test_runs_as_a_standalone_process(tmp_path: Path) -> None:
    port = free_port()
    proc = subprocess.Popen(
        [sys.executable, "-m", "local.hosting.smtp", "--dir", str(tmp_path), "--port", str(port)],
        cwd=REPO,
        stdout=subprocess.PIPE,
        start_new_session=True,
    )
    try:
        assert wait_for_port("127.0.0.1", port, timeout=20)
        notifier(port).send(Email("m1", "from a process", "t"))
    finally:
        stop_process(proc)
    assert len(list((tmp_path / "mail").glob("*.eml"))) == 1
