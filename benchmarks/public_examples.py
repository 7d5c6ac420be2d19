"""Run the public Azure ML pipeline examples with the local executor and print what happened.

    python -m benchmarks.public_examples CHECKOUT [--only TEXT] [--timeout SECONDS] [--workdir DIR]
                                                  [--run-arg=ARG ...]

``CHECKOUT`` is a checkout of Azure/azureml-examples (nothing from it is copied into this
repository). The examples are the pipeline jobs under ``cli/jobs/pipelines*``: every YAML
whose top level is ``type: pipeline`` and that is not a pipeline component. Before running
them, the set-up their CLI workflows run (``infra/bootstrapping/create-*.sh``: ``az ml
component create``, ``az ml data create``, ``az ml environment create``) is replayed with the
local equivalents (``python -m local.aml component|data|environment create``), from the
checkout's root as the scripts do.

Each example runs as a user would run it: ``python -m local.aml run PIPELINE.yml`` in a fresh
process, with one work folder shared by all (the workspace the set-up filled). The table
gives one row per example: ``completed``, ``refused`` (at submit, exit code 2: the one line
the executor printed), ``failed`` (exit code 1: the failing step and the last line of its
log) or ``crashed`` (anything else — a traceback from the executor itself, a timeout), and
the wall time. A checkout that is absent is reported and skipped (exit code 0).
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shlex
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
EXAMPLE_DIRS = ("cli/jobs/pipelines", "cli/jobs/pipelines-with-components")
SETUP_SCRIPTS = (
    "infra/bootstrapping/create-environments.sh",
    "infra/bootstrapping/create-components.sh",
    "infra/bootstrapping/create-datasets.sh",
)
_AZ_CREATE = re.compile(r"^\s*az ml (component|data|environment) create\b(.*)$")
_REDIRECT = re.compile(r"\s*(?:\d?>>?\s*\S+|\d?>&\d)")
LAST_LINES = 6


@dataclass(frozen=True)
class Outcome:
    example: str
    outcome: str  # completed | refused | failed | crashed
    reason: str
    seconds: float


def find_examples(checkout: Path) -> list[Path]:
    """The pipeline jobs under ``cli/jobs/pipelines*`` (pipeline components excluded)."""
    import yaml

    found: list[Path] = []
    for folder in EXAMPLE_DIRS:
        base = checkout / folder
        if not base.is_dir():
            continue
        for path in sorted(base.rglob("*.y*ml")):
            if path.suffix not in (".yml", ".yaml"):
                continue
            try:
                doc = yaml.safe_load(path.read_text(encoding="utf-8"))
            except (yaml.YAMLError, UnicodeDecodeError):
                continue
            if not isinstance(doc, dict) or doc.get("type") != "pipeline":
                continue
            if "pipelineComponent" in str(doc.get("$schema", "")):
                continue
            found.append(path)
    return found


def setup_commands(checkout: Path) -> list[list[str]]:
    """The ``az ml ... create`` lines of the bootstrap scripts, as local.aml argument lists."""
    commands: list[list[str]] = []
    for script in SETUP_SCRIPTS:
        path = checkout / script
        if not path.is_file():
            continue
        for line in path.read_text(encoding="utf-8").splitlines():
            match = _AZ_CREATE.match(line)
            if match is None:
                continue
            args = shlex.split(_REDIRECT.sub("", match.group(2)))
            commands.append([match.group(1), "create", *args])
    return commands


def _local_aml(args: list[str], cwd: Path, timeout: float) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    return subprocess.run(
        [sys.executable, "-m", "local.aml", *args],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


def _last_lines(text: str, count: int = LAST_LINES) -> list[str]:
    return [line.strip() for line in text.strip().splitlines() if line.strip()][-count:]


_TELLING = re.compile(r"Error|Exception|error:|No such file|not found|cannot|Unable", re.I)


def telling_line(text: str) -> str:
    """The line of a log that says most about a failure: the last one naming an error."""
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    for line in reversed(lines):
        if _TELLING.search(line):
            return line
    return lines[-1] if lines else ""


def _job_name(stderr: str) -> str:
    for line in stderr.splitlines():
        match = re.match(r"job (\S+) (?:Failed|Canceled):", line)
        if match:
            return match.group(1)
    return ""


def _executor_traceback(stderr: str) -> bool:
    """A traceback the executor printed itself (a step's own log tail comes after the
    ``job NAME Failed:`` line and does not count)."""
    head = stderr.split("\njob ", 1)[0] if not stderr.startswith("job ") else ""
    return "Traceback (most recent call last)" in head


def _failure_reason(record: dict[str, Any]) -> str:
    """The failing step and its own error: the executor's line, and when that only gives an
    exit code, the telling line of the step's log."""
    step = record.get("failed_step") or ""
    info = record.get("steps", {}).get(step, {})
    error = str(info.get("error") or record.get("error") or "")
    first = error.split("; log tail:", 1)[0].strip()
    first = re.sub(rf"^step '{re.escape(step)}' ", "", first)
    if re.fullmatch(r"failed with exit code -?\d+", first):
        line = telling_line(str(info.get("log_tail") or ""))
        first = f"{first}: {line}" if line else first
    return f"step {step}: {first}"[:300]


def run_example(
    path: Path, checkout: Path, workdir: Path, timeout: float, extra: tuple[str, ...] = ()
) -> Outcome:
    name = str(path.relative_to(checkout / "cli" / "jobs"))
    started = time.monotonic()
    argv = ["run", str(path), "--workdir", str(workdir), *extra]
    try:
        done = _local_aml(argv, path.parent, timeout)
    except subprocess.TimeoutExpired:
        return Outcome(name, "crashed", f"no result after {timeout:g}s", timeout)
    seconds = time.monotonic() - started
    if _executor_traceback(done.stderr):
        return Outcome(name, "crashed", " | ".join(_last_lines(done.stderr, 2))[:300], seconds)
    if done.returncode == 0:
        return Outcome(name, "completed", "", seconds)
    if done.returncode == 2:
        line = _last_lines(done.stderr, 1)
        reason = line[0].removeprefix("error: ") if line else "(no message)"
        return Outcome(name, "refused", reason[:300], seconds)
    job = _job_name(done.stderr)
    record_path = workdir / "jobs" / job / "job.json"
    if done.returncode == 1 and job and record_path.is_file():
        record = json.loads(record_path.read_text(encoding="utf-8"))
        if str(record.get("error", "")).startswith("executor error"):
            return Outcome(name, "crashed", str(record["error"])[:300], seconds)
        return Outcome(name, "failed", _failure_reason(record), seconds)
    return Outcome(name, "crashed", f"exit code {done.returncode}: {telling_line(done.stderr)}",
                   seconds)  # fmt: skip


def run_all(
    checkout: Path,
    workdir: Path,
    *,
    only: str = "",
    timeout: float = 900.0,
    extra: tuple[str, ...] = (),
) -> tuple[list[str], list[Outcome]]:
    """Replay the set-up, then run every example; (set-up report lines, outcomes)."""
    report: list[str] = []
    for args in setup_commands(checkout):
        done = _local_aml([*args, "--workdir", str(workdir)], checkout, timeout)
        if done.returncode == 0:
            created = json.loads(done.stdout)
            outcome = f"ok: {created['name']}:{created['version']}"
        else:
            last = _last_lines(done.stderr, 1)
            outcome = f"exit {done.returncode}" + (f": {last[0]}" if last else "")
        report.append(f"{' '.join(args)} -> {outcome}")
    outcomes = [
        run_example(path, checkout, workdir, timeout, extra)
        for path in find_examples(checkout)
        if only in str(path)
    ]
    return report, outcomes


def table(outcomes: list[Outcome]) -> str:
    lines = ["| example | outcome | reason | seconds |", "|---|---|---|---|"]
    for item in outcomes:
        reason = item.reason.replace("|", "\\|")
        lines.append(f"| {item.example} | {item.outcome} | {reason} | {item.seconds:.1f} |")
    counts: dict[str, int] = {}
    for item in outcomes:
        counts[item.outcome] = counts.get(item.outcome, 0) + 1
    summary = ", ".join(f"{k} {v}" for k, v in sorted(counts.items()))
    lines.append(f"\n{len(outcomes)} examples: {summary}")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("checkout", help="a checkout of Azure/azureml-examples")
    parser.add_argument("--only", default="", help="run only examples whose path contains this")
    parser.add_argument("--timeout", type=float, default=900.0, help="seconds per example")
    parser.add_argument("--workdir", default=None, help="the executor's folder (default: temp)")
    parser.add_argument(
        "--run-arg",
        action="append",
        default=[],
        metavar="ARG",
        help="an extra argument for every 'python -m local.aml run' (repeatable)",
    )
    args = parser.parse_args(argv)
    checkout = Path(args.checkout).resolve()
    if not (checkout / "cli" / "jobs").is_dir():
        print(f"skipped: {checkout} is not a checkout of Azure/azureml-examples (no cli/jobs)")
        return 0
    with tempfile.TemporaryDirectory(prefix="aml-examples-") as tmp:
        workdir = Path(args.workdir).resolve() if args.workdir else Path(tmp) / "aml"
        report, outcomes = run_all(
            checkout, workdir, only=args.only, timeout=args.timeout, extra=tuple(args.run_arg)
        )
    for line in report:
        print(f"set-up: {line}")
    print(table(outcomes))
    return 1 if any(o.outcome == "crashed" for o in outcomes) else 0


if __name__ == "__main__":
    sys.exit(main())
