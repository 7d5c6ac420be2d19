"""Running a benchmark the way ``make bench-*`` does, at a small size, for its smoke test."""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

REPO = Path(__file__).resolve().parents[2]

RunBench = Callable[..., dict[str, Any]]


@pytest.fixture
def run_bench(tmp_path: Path) -> RunBench:
    """``run_bench("loop", "--segments", "4", "8")``: ``python -m benchmarks.loop ... --json F``
    in a fresh interpreter from the repository root; fails the test on a non-zero exit and
    returns what the benchmark wrote to ``F``."""

    def run(module: str, *args: str, timeout: float = 600) -> dict[str, Any]:
        out = tmp_path / f"{module}.json"
        command = [sys.executable, "-m", f"benchmarks.{module}", *args, "--json", str(out)]
        proc = subprocess.run(
            command, cwd=REPO, capture_output=True, text=True, timeout=timeout, check=False
        )
        assert proc.returncode == 0, f"{' '.join(command[1:])} failed:\n{proc.stderr[-3000:]}"
        assert out.is_file(), f"{module} wrote no results:\n{proc.stdout[-2000:]}"
        result: dict[str, Any] = json.loads(out.read_text())
        result["stdout"] = proc.stdout
        return result

    return run
