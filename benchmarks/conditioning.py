"""Conditioning throughput and memory against pandas, bare pyarrow, DuckDB and Polars.

    python -m benchmarks.conditioning [--mb 250 --mb 1024] [--repeat 2] [--defect-rate 0.001]
                                      [--methods engine,pyarrow,duckdb,polars,pandas] [--json F]

For each size it generates a raw shipments CSV (standard layout) in a temporary directory, then
runs each method in its own process on that same file and reports MB/s (input megabytes per
wall-clock second) and peak RSS, plus the ratios the goals are stated in:

* engine   conditioning.engine.condition_file: read, validate, normalise, dedupe, write, manifest
* duckdb   DuckDB doing the same checks, dedupe, outputs and hashes (benchmarks/conditioning_peers)
* polars   Polars (lazy, streaming engine) doing the same (benchmarks/conditioning_peers)
* pandas   read_csv -> to_datetime(week_start) -> to_csv (the naive way)
* pyarrow  pyarrow.csv.read_csv -> pyarrow.csv.write_csv (the practical limit: no checks)

The engine's, DuckDB's and Polars' accounting (rows in, out, rejected, counts per reason) must
agree, or the run stops: a faster method that checks less would not be a comparison. Goals:
the engine at least 0.8x bare pyarrow's speed and 1.3x DuckDB's, at most 300 MB peak RSS, and
flat memory from the smallest size to the largest. ``--json`` writes every measurement.

Peak RSS includes the interpreter and imported libraries (~100 MB before any data).
On a shared machine compare ratios, not absolute numbers, and use --repeat: methods then run
round-robin and each keeps its fastest run (and its highest peak RSS).
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import resource
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

METHODS = ("engine", "pyarrow", "duckdb", "polars", "pandas")
AS_OF = dt.date(2026, 1, 1)
GOAL_VS_PYARROW = 0.8
GOAL_VS_DUCKDB = 1.3
GOAL_PEAK_MB = 300.0
CHECKED = ("engine", "duckdb", "polars")  # methods that condition: their accounting must agree


def _run_engine(path: Path, work: Path) -> dict[str, object]:
    from conditioning.engine import condition_file
    from conditioning.mapping import builtin_mappings

    result = condition_file(
        path,
        "shipments",
        work / "staging",
        candidates=builtin_mappings()["shipments"],
        as_of=AS_OF,
    )
    assert result is not None and result.usable, result
    m = result.manifest
    return {
        "rows_in": m["rows_in"],
        "rows_out": m["rows_out"],
        "rows_rejected": m["rows_rejected"],
        "reject_counts": m["reject_counts"],
    }


def _run_duckdb(path: Path, work: Path) -> dict[str, object]:
    from benchmarks.conditioning_peers import run_duckdb

    return run_duckdb(path, work / "out", AS_OF)


def _run_polars(path: Path, work: Path) -> dict[str, object]:
    from benchmarks.conditioning_peers import run_polars

    return run_polars(path, work / "out", AS_OF)


def _run_pandas(path: Path, work: Path) -> dict[str, object]:
    import pandas as pd

    df = pd.read_csv(path)
    df["week_start"] = pd.to_datetime(df["week_start"], format="%Y-%m-%d")
    df.to_csv(work / "out.csv", index=False)
    return {"rows": len(df)}


def _run_pyarrow(path: Path, work: Path) -> dict[str, object]:
    import pyarrow.csv as pacsv

    table = pacsv.read_csv(path)
    pacsv.write_csv(table, work / "out.csv")
    return {"rows": table.num_rows}


def _child(method: str, path: Path) -> None:
    runner = {"engine": _run_engine, "pandas": _run_pandas, "pyarrow": _run_pyarrow,
              "duckdb": _run_duckdb, "polars": _run_polars}[method]  # fmt: skip
    # Import the libraries before the clock starts: start-up is not throughput.
    import importlib

    import pandas  # noqa: F401
    import pyarrow.csv  # noqa: F401

    if method in ("duckdb", "polars"):
        importlib.import_module(method)

    with tempfile.TemporaryDirectory(prefix=f"bench-{method}-") as tmp:
        start = time.perf_counter()
        detail = runner(path, Path(tmp))
        seconds = time.perf_counter() - start
    peak_kb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    print(json.dumps({"seconds": seconds, "peak_rss_mb": peak_kb / 1024, "detail": detail}))


def _measure(method: str, path: Path) -> dict[str, Any]:
    out = subprocess.run(
        [sys.executable, "-m", "benchmarks.conditioning", "--child", method, str(path)],
        check=True,
        capture_output=True,
        text=True,
    )
    result: dict[str, Any] = json.loads(out.stdout.strip().splitlines()[-1])
    return result


def _speed(results: dict[str, dict[str, object]], method: str) -> float | None:
    r = results.get(method)
    return None if r is None else 1.0 / float(r["seconds"])  # type: ignore[arg-type]


@dataclass(frozen=True)
class Measured:
    size_mb: int
    method: str
    seconds: float
    input_mb: float
    peak_rss_mb: float
    detail: dict[str, Any]


PEERS = ("pandas", "pyarrow", "duckdb", "polars")


def _table(rows: list[Measured]) -> str:
    titles = {"pandas": "× naive pandas", "pyarrow": "× bare pyarrow", "duckdb": "× DuckDB",
              "polars": "× Polars"}  # fmt: skip
    peers = [m for m in PEERS if any(r.method == m for r in rows)]
    lines = [
        "| input MB | method | MB/s | peak RSS MB | " + " | ".join(titles[m] for m in peers) + " |",
        "|---:|---|---:|---:|" + "---:|" * len(peers),
    ]
    by_size: dict[int, dict[str, Measured]] = {}
    for r in rows:
        by_size.setdefault(r.size_mb, {})[r.method] = r
    for r in rows:
        same = by_size[r.size_mb]
        ratios = [f"{same[o].seconds / r.seconds:.2f}" if o in same else "-" for o in peers]
        rate = r.input_mb / r.seconds
        lines.append(
            f"| {r.size_mb} | {r.method} | {rate:.1f} | {r.peak_rss_mb:.0f} | "
            + " | ".join(ratios)
            + " |"
        )
    return "\n".join(lines)


def check_accounting(rows: list[Measured]) -> list[str]:
    """Where the methods that condition disagree on rows in/out/rejected or reject counts."""
    keys = ("rows_in", "rows_out", "rows_rejected", "reject_counts")
    problems = []
    by_size: dict[int, dict[str, Measured]] = {}
    for r in rows:
        by_size.setdefault(r.size_mb, {})[r.method] = r
    for size, same in by_size.items():
        engine = same.get("engine")
        for method in CHECKED:
            if engine is None or method not in same or method == "engine":
                continue
            theirs = {k: same[method].detail.get(k) for k in keys}
            ours = {k: engine.detail.get(k) for k in keys}
            if theirs != ours:
                problems.append(f"{size} MB: {method} accounted {theirs}, the engine {ours}")
    return problems


def goals(rows: list[Measured]) -> list[tuple[str, bool | None]]:
    """Each goal and whether it holds (None: a method it needs was not run)."""
    engine = [r for r in rows if r.method == "engine"]
    by = {(r.size_mb, r.method): r for r in rows}

    def ratio(peer: str) -> list[float]:
        return [
            by[(e.size_mb, peer)].seconds / e.seconds for e in engine if (e.size_mb, peer) in by
        ]

    vs_pyarrow, vs_duckdb = ratio("pyarrow"), ratio("duckdb")
    peaks = [e.peak_rss_mb for e in engine]
    flat = max(peaks) - min(peaks) if len(peaks) > 1 else None
    return [
        (f"engine >= {GOAL_VS_PYARROW}x bare pyarrow's speed",
         min(vs_pyarrow) >= GOAL_VS_PYARROW if vs_pyarrow else None),
        (f"engine >= {GOAL_VS_DUCKDB}x DuckDB's speed",
         min(vs_duckdb) >= GOAL_VS_DUCKDB if vs_duckdb else None),
        (f"engine peak RSS <= {GOAL_PEAK_MB:.0f} MB",
         max(peaks) <= GOAL_PEAK_MB if peaks else None),
        ("engine memory flat across sizes (within 10%)",
         None if flat is None else flat <= 0.1 * min(peaks)),
    ]  # fmt: skip


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m benchmarks.conditioning", description=__doc__)
    p.add_argument("--mb", type=int, action="append", help="input size in MB (repeatable)")
    p.add_argument("--defect-rate", type=float, default=0.001)
    p.add_argument("--methods", default=",".join(METHODS))
    p.add_argument("--tmp", type=Path, default=None, help="where to generate inputs")
    p.add_argument(
        "--repeat",
        type=int,
        default=1,
        help="run the methods round-robin this many times and keep each one's best run",
    )
    p.add_argument("--json", type=Path, default=None, help="also write the results here")
    p.add_argument("--child", nargs=2, metavar=("METHOD", "INPUT"), help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.child:
        _child(args.child[0], Path(args.child[1]))
        return 0
    from conditioning.synthetic import write_large_shipments

    methods = [m for m in args.methods.split(",") if m]
    unknown = sorted(set(methods) - set(METHODS))
    if unknown:
        p.error(f"unknown method(s) {unknown}; choose from {list(METHODS)}")
    measured: list[Measured] = []
    with tempfile.TemporaryDirectory(prefix="bench-conditioning-", dir=args.tmp) as tmp:
        for mb in args.mb or [250]:
            path = Path(tmp) / f"shipments-{mb}mb.csv"
            rows = write_large_shipments(path, mb << 20, defect_rate=args.defect_rate)
            input_mb = path.stat().st_size / (1 << 20)
            print(f"# input {path.name}: {input_mb:.0f} MB, {rows:,} rows", flush=True)
            best: dict[str, Measured] = {}
            for _ in range(max(1, args.repeat)):
                for m in methods:
                    r = _measure(m, path)
                    print(f"#   {m}: {json.dumps(r)}", flush=True)
                    peak = max(float(r["peak_rss_mb"]), best[m].peak_rss_mb if m in best else 0)
                    seconds = min(float(r["seconds"]), best[m].seconds if m in best else 1e18)
                    best[m] = Measured(mb, m, seconds, input_mb, peak, dict(r["detail"]))
            measured.extend(best[m] for m in methods)
            path.unlink()
    problems = check_accounting(measured)
    print()
    print(_table(measured))
    print()
    checked = goals(measured)
    for name, holds in checked:
        print(f"{'-' if holds is None else 'meets' if holds else 'MISSES'}: {name}")
    for problem in problems:
        print(f"ACCOUNTING DIFFERS: {problem}")
    if args.json:
        args.json.write_text(
            json.dumps(
                {
                    "measured": [m.__dict__ for m in measured],
                    "goals": [{"goal": n, "holds": h} for n, h in checked],
                    "accounting_differs": problems,
                },
                indent=1,
            )
        )
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
