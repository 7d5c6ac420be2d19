"""Shared fixtures: real servers on 127.0.0.1, stopped by the fixture that started them."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from local.hosting.azurite import Azurite

REPO_ROOT = Path(__file__).resolve().parent.parent
SHARED_DATA = REPO_ROOT.parent / "shared" / "data"


@pytest.fixture(scope="session")
def azurite() -> Iterator[Azurite]:
    """One in-memory Azurite for the whole test session (tests use unique container names)."""
    with Azurite() as server:
        yield server


@pytest.fixture
def shared_data() -> Path:
    """``../shared/data``; tests that need it skip when it is absent."""
    if not SHARED_DATA.is_dir():
        pytest.skip(f"shared data not found at {SHARED_DATA}; these tests read ../shared/data")
    return SHARED_DATA
