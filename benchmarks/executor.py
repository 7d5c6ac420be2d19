"""The local Azure ML executor's own cost: environments, a parallel job, and one step.

    python -m benchmarks.executor [--partitions 1000] [--steps 10] [--no-cold]

0. Environments: the build time of the project's step environments (every distinct one the
   pipelines under ``pipelines/`` declare) into an empty environment cache, first with an
   empty package cache (``--no-cold`` skips this: it downloads from the registries), then
   with the package cache warm, then the lookup of an environment already built.

1. Parallel job: an MLTable of ``--partitions`` partitions (10 rows each), ``partition_keys``,
   2 worker processes, a ``run()`` that sums a column. Per-partition overhead is the step's
   wall time minus the summed time inside ``run()``, divided by the partitions (goal <= 20 ms);
   peak RSS counts the executor and both workers (goal <= 1 GB). Baseline, same run: the same
   ``run()`` over the same partitions in one plain loop (pandas groupby, no executor).
2. Command step: a chain of ``--steps`` empty steps (``python -c pass``) in a built (bare)
   environment under Azure ML's job contract; the per-step overhead is the median time from
   one step starting to the next one starting (goal <= 1.5 s), broken down by the executor's
   phase timings. Baselines, same run: starting that empty process bare, and the same chain
   with ``--env project`` (steps in the project's virtualenv, no workspace endpoint).

Peak RSS is sampled from /proc (the executor and every process below it, summed) every 50 ms,
so it is the real simultaneous total, not a sum of per-process peaks.

Each scenario runs in a fresh interpreter (``python -m benchmarks.executor _child ...``), as
the executor does when the app submits a job, so import costs are counted where they occur.
On a shared machine compare the ratios.
"""

from __future__ import annotations

import argparse
import itertools
import json
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
ROWS_PER_PARTITION = 10

ENTRY = """\
def init():
    pass


def run(mini_batch, mini_batch_context):
    key = mini_batch_context.partition_key_value["key"]
    return [f"{key} {float(mini_batch['value'].sum())}"]
"""

PARALLEL = """\
type: pipeline
inputs:
  table:
    type: mltable
    path: ./table
outputs:
  rows:
    type: uri_file
jobs:
  fan:
    type: parallel
    inputs:
      data: ${{parent.inputs.table}}
    outputs:
      rows: ${{parent.outputs.rows}}
    input_data: ${{inputs.data}}
    partition_keys: [key]
    max_concurrency_per_instance: 2
    task:
      type: run_function
      code: ./src
      entry_script: entry.py
      environment:
        image: mcr.microsoft.com/azureml/openmpi4.1.0-ubuntu22.04:latest
        conda_file: ./conda.yml
      append_row_to: ${{outputs.rows}}
"""

# Azure ML's parallel runner reads an mltable input with mltable; run() uses pandas.
CONDA = """\
name: bench-parallel
dependencies:
  - python=3.11
  - pip:
      - mltable==1.7.0
      - pandas==2.3.3
      - pyarrow==25.0.1
"""

MLTABLE = """\
paths:
  - file: ./table.csv
transformations:
  - read_delimited:
      delimiter: ","
      header: all_files_same_headers
"""


def _chain(steps: int) -> str:
    """``steps`` empty command steps, each consuming the previous one's output."""
    lines = ["type: pipeline", "jobs:"]
    for i in range(steps):
        previous = "${{inputs.previous}} " if i else ""
        lines += [
            f"  s{i}:",
            "    type: command",
            "    code: ./src",
            "    environment:",
            "      image: mcr.microsoft.com/azureml/openmpi4.1.0-ubuntu22.04:latest",
            f"    command: python -c pass {previous}${{{{outputs.out}}}}",
            "    outputs:",
            "      out:",
            "        type: uri_folder",
        ]
        if i:
            lines += ["    inputs:", f"      previous: ${{{{parent.jobs.s{i - 1}.outputs.out}}}}"]
    return "\n".join(lines) + "\n"


def _write_parallel(folder: Path, partitions: int) -> Path:
    import pandas as pd

    (folder / "src").mkdir(parents=True)
    (folder / "src" / "entry.py").write_text(ENTRY)
    (folder / "conda.yml").write_text(CONDA)
    (folder / "table").mkdir()
    keys = [f"k{i:05d}" for i in range(partitions) for _ in range(ROWS_PER_PARTITION)]
    frame = pd.DataFrame({"key": keys, "value": range(len(keys))})
    frame.to_csv(folder / "table" / "table.csv", index=False)
    (folder / "table" / "MLTable").write_text(MLTABLE)
    (folder / "pipeline.yml").write_text(PARALLEL)
    return folder / "pipeline.yml"


def _seconds(start: str | None, end: str | None) -> float:
    from datetime import datetime

    if not start or not end:
        return float("nan")
    parse = datetime.fromisoformat
    return (parse(end.replace("Z", "+00:00")) - parse(start.replace("Z", "+00:00"))).total_seconds()


def _rss_kb(pid: int) -> int:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    except (OSError, ValueError):
        pass
    return 0


def _tree_rss_kb(root: int) -> int:
    """Resident memory of ``root`` and all its descendants, now."""
    parents: dict[int, int] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
            except (OSError, IndexError):
                continue
            parents[int(entry.name)] = int(fields[1])
    tree = {root}
    grown = True
    while grown:
        grown = False
        for pid, parent in parents.items():
            if parent in tree and pid not in tree:
                tree.add(pid)
                grown = True
    return sum(_rss_kb(pid) for pid in tree)


class _PeakRss:
    """Samples this process tree's total RSS in a thread; ``peak_mb`` is the highest seen."""

    def __init__(self) -> None:
        import os
        import threading

        self.peak_kb = 0
        self._pid = os.getpid()
        self._done = threading.Event()
        self._thread = threading.Thread(target=self._sample, daemon=True)

    def _sample(self) -> None:
        while not self._done.wait(0.05):
            self.peak_kb = max(self.peak_kb, _tree_rss_kb(self._pid))

    def __enter__(self) -> _PeakRss:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._done.set()
        self._thread.join()

    @property
    def peak_mb(self) -> float:
        return self.peak_kb / 1024


def _child(kind: str, folder: Path, size: int) -> dict[str, Any]:
    """One scenario in this (fresh) interpreter; returns its measurements."""
    from local.aml import LocalExecutor, sqlite_tracking_uri

    if kind == "loop":  # baseline: run() over the same partitions, no executor
        import importlib.util

        import pandas as pd

        from local.aml.parallel_worker import MiniBatchContext

        spec = importlib.util.spec_from_file_location("entry", folder / "src" / "entry.py")
        assert spec is not None and spec.loader is not None
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
        started = time.perf_counter()
        frame = pd.read_csv(folder / "table" / "table.csv")
        module.init()
        for index, (key, group) in enumerate(frame.groupby("key", sort=True)):
            module.run(group.reset_index(drop=True), MiniBatchContext(index, {"key": key}))
        return {"wall": time.perf_counter() - started}
    if kind == "bare":  # baseline: the empty step's process, started directly
        times = []
        for _ in range(size):
            started = time.perf_counter()
            subprocess.run([sys.executable, "-c", "pass"], check=True)
            times.append(time.perf_counter() - started)
        return {"wall": statistics.median(times)}
    if kind == "environments":
        return _environments(folder, cold=bool(size))
    tracking = sqlite_tracking_uri(folder / "mlflow")
    mode = "project" if kind == "chain-project" else "declared"
    executor = LocalExecutor(
        folder / "aml", tracking_uri=tracking, step_timeout=3600, env_mode=mode
    )
    started = time.perf_counter()
    with _PeakRss() as rss:
        record = executor.run(executor.submit(folder / "pipeline.yml").name)
    wall = time.perf_counter() - started
    assert record.status == "Completed", record.error
    steps = list(record.steps.values())
    result: dict[str, Any] = {
        "wall": wall,
        "job_running": _seconds(record.started_at, record.ended_at),
        "steps": {s.name: _seconds(s.started_at, s.ended_at) for s in steps},
        "starts": sorted(s.started_at or "" for s in steps),
        "phases": executor.phase_seconds,
        "rss_peak_mb": rss.peak_mb,
        "rss_self_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
    }
    if kind == "parallel":
        result["progress"] = record.steps["fan"].progress
        rows = Path(record.outputs["rows"]).read_text().splitlines()
        assert len(rows) == size, f"{len(rows)} result rows for {size} partitions"
    return result


def _environments(folder: Path, *, cold: bool) -> dict[str, Any]:
    """Build the project's step environments into an empty cache, and look them up again."""
    import os

    from local.aml import LocalExecutor
    from local.aml.environments import EnvironmentCache

    pipelines = sorted((REPO / "pipelines").glob("*.yml"))
    probe = LocalExecutor(folder / "probe")
    specs = {}
    for pipeline in pipelines:
        for env in probe.declared_environments(pipeline).values():
            specs[env.key] = env
    result: dict[str, Any] = {"environments": {}}
    passes = (["cold"] if cold else []) + ["warm"]
    for label in passes:
        if label == "cold":
            os.environ["UV_CACHE_DIR"] = str(folder / "uv-cache")
        else:
            os.environ.pop("UV_CACHE_DIR", None)
        cache = EnvironmentCache(folder / f"envs-{label}")
        for env in specs.values():
            built = cache.ensure(env)
            row = result["environments"].setdefault(env.name, {"packages": built.packages})
            row[label] = built.seconds
            started = time.perf_counter()
            again = cache.ensure(env)
            row["cached"] = time.perf_counter() - started
            assert again.cached
    return result


def _spawn(kind: str, folder: Path, size: int) -> dict[str, Any]:
    out = subprocess.run(
        [sys.executable, "-m", "benchmarks.executor", "_child", kind, str(folder), str(size)],
        cwd=REPO,
        check=True,
        capture_output=True,
        text=True,
    )
    return dict(json.loads(out.stdout.strip().splitlines()[-1]))


def main(argv: list[str] | None = None) -> int:
    if argv is None:
        argv = sys.argv[1:]
    if argv and argv[0] == "_child":
        print(json.dumps(_child(argv[1], Path(argv[2]), int(argv[3]))))
        return 0
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--partitions", type=int, default=1000)
    parser.add_argument("--steps", type=int, default=10)
    parser.add_argument(
        "--no-cold", action="store_true", help="skip the build with an empty package cache"
    )
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="bench-executor-") as tmp:
        root = Path(tmp)
        envs = _spawn("environments", root / "envs", 0 if args.no_cold else 1)
        _write_parallel(root / "parallel", args.partitions)
        loop = _spawn("loop", root / "parallel", args.partitions)
        par = _spawn("parallel", root / "parallel", args.partitions)
        folder = root / "chain"
        (folder / "src").mkdir(parents=True)
        (folder / "pipeline.yml").write_text(_chain(args.steps))
        chain = _spawn("chain", folder, args.steps)
        project = _spawn("chain-project", folder, args.steps)
        bare = _spawn("bare", root, 15)

    _report_environments(envs)
    _report_parallel(args.partitions, par, loop)
    _report_step(args.steps, chain, bare, project)
    return 0


def _report_environments(envs: dict[str, Any]) -> None:
    rows = envs["environments"]
    print("\nStep environments of the project's pipelines (uv, this machine's Python)\n")
    print(f"{'environment':<30} {'packages':>8} {'cold (s)':>9} {'warm (s)':>9} {'cached (s)':>11}")
    for name, row in sorted(rows.items()):
        cold = f"{row['cold']:.1f}" if "cold" in row else "-"
        print(
            f"{name:<30} {row['packages']:>8} {cold:>9} {row['warm']:>9.1f} {row['cached']:>11.4f}"
        )
    print("cold: empty package cache (downloads); warm: new virtualenv, packages cached;")
    print("cached: the environment is built already (what every job after the first sees)")


def _report_parallel(n: int, par: dict[str, Any], loop: dict[str, Any]) -> None:
    step_wall = par["steps"]["fan"]
    run_seconds = par["progress"]["run_ms"] / 1000
    overhead_ms = (step_wall - run_seconds) / n * 1000
    peak_mb = par["rss_peak_mb"]
    print(f"\nParallel job: {n} partitions x {ROWS_PER_PARTITION} rows, 2 worker processes\n")
    print(f"{'measure':<46} {'value':>12}")
    print(f"{'parallel step wall time (s)':<46} {step_wall:>12.2f}")
    print(f"{'summed time inside run() (s)':<46} {run_seconds:>12.2f}")
    print(f"{'per-partition overhead (ms)':<46} {overhead_ms:>12.2f}")
    print(f"{'baseline: plain loop over the same run() (s)':<46} {loop['wall']:>12.2f}")
    print(f"{'ratio step wall / plain loop':<46} {step_wall / loop['wall']:>12.2f}")
    print(f"{'peak RSS: executor alone (MB)':<46} {par['rss_self_mb']:>12.0f}")
    print(f"{'peak RSS: executor + workers, sampled (MB)':<46} {peak_mb:>12.0f}")
    ok_overhead = "meets" if overhead_ms <= 20 else "MISSES"
    ok_rss = "meets" if peak_mb <= 1024 else "MISSES"
    print(f"\nper-partition overhead {overhead_ms:.2f} ms ({ok_overhead} the goal of <= 20 ms)")
    print(f"peak RSS {peak_mb:.0f} MB ({ok_rss} the goal of <= 1024 MB)")


def _per_step(chain: dict[str, Any]) -> float:
    from datetime import datetime

    starts = [datetime.fromisoformat(t.replace("Z", "+00:00")) for t in chain["starts"] if t]
    return statistics.median((b - a).total_seconds() for a, b in itertools.pairwise(starts))


def _report_step(
    steps: int, chain: dict[str, Any], bare: dict[str, Any], project: dict[str, Any]
) -> None:
    per_step = _per_step(chain)
    process = bare["wall"]
    phases = chain["phases"]
    once = sorted(k for k in phases if k.startswith(("load", "MLflow", "workspace")))
    per_phase = {k: v / steps for k, v in phases.items() if k not in once}
    rest = per_step - process - sum(per_phase.values())
    print(f"\nCommand step: {steps} chained empty steps (python -c pass)\n")
    print(f"{'where the time goes, per step':<46} {'s':>8}")
    for name, value in sorted(per_phase.items(), key=lambda kv: -kv[1]):
        print(f"{name:<46} {value:>8.3f}")
    print(f"{'process start + python import (bare, median)':<46} {process:>8.3f}")
    print(f"{'run loop: polling, reaping, the rest':<46} {rest:>8.3f}")
    print(f"{'per-step overhead (start to next start, median)':<46} {per_step:>8.3f}")
    print(f"{'ratio per-step overhead / bare process':<46} {per_step / process:>8.2f}")
    print(f"{'-- once per job, not per step --':<46}")
    for name in once:
        print(f"{name:<46} {phases[name]:>8.3f}")
    print(f"{'job wall, ' + str(steps) + ' steps (s)':<46} {chain['wall']:>8.3f}")
    in_project = _per_step(project)
    print(f"{'baseline: per-step overhead, --env project':<46} {in_project:>8.3f}")
    print(f"{'ratio declared / project, per step':<46} {per_step / in_project:>8.2f}")
    ok_step = "meets" if per_step <= 1.5 else "MISSES"
    print(f"\nper-step overhead {per_step:.3f} s ({ok_step} the goal of <= 1.5 s)")


if __name__ == "__main__":
    sys.exit(main())
