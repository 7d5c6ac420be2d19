"""The GitHub workflows pass actionlint and call only make targets that exist."""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from tests.infra.bicep import REPO_ROOT

WORKFLOWS = REPO_ROOT / ".github" / "workflows"


def _actionlint() -> str:
    # Installed next to the interpreter by requirements-dev.txt.
    beside = Path(sys.executable).parent / "actionlint"
    found = str(beside) if beside.is_file() else shutil.which("actionlint")
    if found is None:
        pytest.fail("actionlint is not installed (make setup installs requirements-dev.txt)")
    return found


def _workflow_files() -> list[Path]:
    return sorted(WORKFLOWS.glob("*.yml"))


def test_workflows_exist_for_pull_requests_main_and_releases() -> None:
    triggers: dict[str, object] = {}
    for path in _workflow_files():
        # PyYAML reads the `on:` key as the boolean True.
        on = yaml.safe_load(path.read_text()).get(True, {})
        triggers[path.stem] = on
    events = {event for on in triggers.values() if isinstance(on, dict) for event in on}
    assert {"pull_request", "push", "workflow_call"} <= events
    release = triggers["release"]
    assert isinstance(release, dict)
    assert release["push"]["tags"] and release["push"]["branches"]


def test_every_workflow_passes_actionlint() -> None:
    files = [str(p) for p in _workflow_files()]
    assert files
    proc = subprocess.run(
        [_actionlint(), "-no-color", *files],
        capture_output=True,
        text=True,
        cwd=REPO_ROOT,
        timeout=120,
        check=False,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr


def test_actionlint_rejects_a_broken_workflow(tmp_path: Path) -> None:
    broken = tmp_path / "broken.yml"
    broken.write_text(
        "on: push\njobs:\n  x:\n    runs-on: ubuntu-latest\n"
        "    steps:\n      - run: echo ${{ github.nonexistent_context_key }}\n"
        "      - uses: actions/checkout@v4\n        with:\n          no-such-input: 1\n"
    )
    proc = subprocess.run(
        [_actionlint(), "-no-color", str(broken)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert proc.returncode != 0


def test_workflows_call_make_targets_that_exist() -> None:
    makefile = (REPO_ROOT / "Makefile").read_text()
    targets = set(re.findall(r"^([A-Za-z][\w-]*):", makefile, flags=re.MULTILINE))
    used = {
        target
        for path in _workflow_files()
        for target in re.findall(r"\bmake ([a-z][\w-]*)", path.read_text())
    }
    assert used
    assert used <= targets


def test_production_deploys_only_after_checks_pass() -> None:
    release = yaml.safe_load((WORKFLOWS / "release.yml").read_text())
    prod = release["jobs"]["prod"]
    assert prod["needs"] == "checks"
    assert prod["with"]["environment"] == "prod"
    deploy = yaml.safe_load((WORKFLOWS / "deploy.yml").read_text())
    # The GitHub environment carries the reviewers' approval gate.
    assert all(job["environment"] == "${{ inputs.environment }}" for job in deploy["jobs"].values())
