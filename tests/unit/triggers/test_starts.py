"""``find_or_start``: which run a start request gets, against an in-memory Durable client.

The stand-in answers ``get_status`` the way azure-functions-durable's client does (an object
whose ``runtime_status`` is ``None`` for an unknown instance) and records ``start_new``.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from enum import Enum
from typing import Any

from orchestrators.policies import start_ids
from triggers.starts import find_or_start


class Runtime(Enum):
    RUNNING = "Running"
    COMPLETED = "Completed"
    FAILED = "Failed"


@dataclass
class Status:
    runtime_status: Runtime | None = None
    created_time: datetime | None = None


@dataclass
class Client:
    instances: dict[str, Status] = field(default_factory=dict)
    started: list[str] = field(default_factory=list)
    clock: datetime = datetime(2026, 11, 23, 6, 0, 30, tzinfo=UTC)

    async def get_status(self, instance_id: str) -> Status:
        return self.instances.get(instance_id, Status())

    async def start_new(self, orchestrator: str, instance_id: str, payload: Any) -> str:
        self.started.append(instance_id)
        self.instances[instance_id] = Status(Runtime.RUNNING, self.clock)
        return instance_id


WINDOW = timedelta(seconds=120)
BODY = {"segments": ["r01-large-fast"], "week": "2026-11-23"}


def _start(client: Client, key: str | None = None) -> tuple[str, bool]:
    ids = start_ids("train", BODY, key, client.clock, WINDOW)
    return asyncio.run(find_or_start(client, "run_train", ids, {}))  # type: ignore[arg-type]


def test_a_repeat_within_the_window_finds_the_run_even_across_a_window_boundary() -> None:
    client = Client()
    first, started = _start(client)
    assert started
    client.clock += timedelta(seconds=100)  # the next fixed window, but only 100 s later
    assert _start(client) == (first, False)
    assert client.started == [first]


def test_a_repeat_after_the_window_starts_a_new_run() -> None:
    client = Client()
    first, _ = _start(client)
    client.instances[first].runtime_status = Runtime.COMPLETED
    client.clock += WINDOW + timedelta(seconds=1)
    second, started = _start(client)
    assert started and second != first


def test_a_failed_run_is_started_again_by_the_repeat() -> None:
    client = Client()
    first, _ = _start(client)
    client.instances[first].runtime_status = Runtime.FAILED
    client.clock += timedelta(seconds=10)
    again, started = _start(client)
    assert (again, started) == (first, True)


def test_a_keyed_request_finds_its_run_whenever_it_comes() -> None:
    client = Client()
    first, _ = _start(client, key="run-1")
    client.instances[first].runtime_status = Runtime.COMPLETED
    client.clock += timedelta(days=7)
    assert _start(client, key="run-1") == (first, False)
    second, started = _start(client, key="run-2")
    assert started and second == "train-run-2"


def test_a_naive_created_time_is_read_as_utc() -> None:
    client = Client()
    first, _ = _start(client)
    created = client.instances[first].created_time
    assert created is not None
    client.instances[first].created_time = created.replace(tzinfo=None)
    client.clock += timedelta(seconds=100)
    assert _start(client) == (first, False)
