"""Fixtures of the rehearsal, and its figures printed at the end of the test session."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.rehearsal.harness import rehearsal
from tests.rehearsal.loop import Loop, report, run_loop

FIGURES: list[str] = []


@pytest.fixture(scope="module", params=["dev", "prod"])
def loop(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Loop]:
    """The whole loop, once per parameter file (``infra/main.<env>.parameters.json``)."""
    from tests.conftest import SHARED_DATA

    rest = SHARED_DATA / "azureml-rest"
    if not (rest / "OPERATIONS.md").is_file():
        pytest.skip(
            f"the Azure ML REST shapes are not at {rest}; the workspace stand-in reads them"
        )
    environment = str(request.param)
    work: Path = tmp_path_factory.mktemp(f"rehearsal-{environment}")
    with rehearsal(environment, work, rest) as running:
        done = run_loop(running)
        FIGURES.extend(report(done))
        yield done


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    if FIGURES:
        terminalreporter.section("Azure rehearsal: measured figures")
        for line in FIGURES:
            terminalreporter.write_line(line)
