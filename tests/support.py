"""Small helpers the integration and end-to-end tests share."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import pytest


def wait_until(predicate: Callable[[], Any], timeout: float = 20.0, step: float = 0.1) -> Any:
    """Poll ``predicate`` until it returns something truthy; fail the test after ``timeout``."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(step)
    raise AssertionError(f"condition not met within {timeout}s")


@contextmanager
def logs_at_info(caplog: pytest.LogCaptureFixture) -> Iterator[None]:
    """Capture INFO and up: asyncio logs its slow-callback warnings there."""
    with caplog.at_level(logging.INFO):
        yield


def stalls(caplog: pytest.LogCaptureFixture) -> list[str]:
    """asyncio's slow-callback warnings logged so far in this test (from a host's loop in
    debug mode): each names a callback that held the event loop too long."""
    return [
        r.getMessage()
        for r in caplog.records
        if r.name == "asyncio" and r.getMessage().startswith("Executing ")
    ]
