"""Many models at case-study scale: the train loop over 3,331 partitions against 4x as many.

    python -m benchmarks.many_models [--partitions 3331] [--scale 4] [--weeks 110]
                                     [--members baseline,seasonal_naive,lasso] [--json FILE]

Each size runs in a fresh process on the real local runtime (``LocalRuntime``: Azurite, the
function app on the local Functions host, the Durable Task engine, the local Azure ML executor
running ``pipelines/train_many.yml`` for real, MLflow's sqlite registry, the dashboard). A
synthetic drop of ``--partitions`` store x product series (``--weeks`` weeks each; stores
alternate large and small, products span slow and fast movers) lands in the raw container
and is conditioned by the blob trigger; then ``POST /api/orchestrations/train`` with
``many_models`` trains the region's four segments, one forecaster per partition, gates every
partition and each segment, registers one model per segment holding its partitions'
forecasters, tests each registered model (ModelRegistered events) and scores the champions.
Each partition's forecaster trains ``--members`` (``MLOPS_PARTITION_MEMBERS``): cheap members
keep a 13,324-partition run within the time of a benchmark while every partition still goes
through the parallel step, the artefacts, the registry, the gate and scoring.

Measured per size: wall time of the train run (start request to Completed, scoring included),
the segment jobs' steps (prep, the parallel train step with the time spent inside ``run()``,
collect, register), peak RSS of the whole process tree (runtime, Azurite, job processes and
parallel workers, sampled), the registered models (versions, partition forecasters and bytes
per segment model), the gate summaries (bytes of the pipeline's metrics and of the run's
per-segment result), the orchestration (largest custom status, largest history) and the
dashboard (pages served, summary bytes). Goals: 4x the partitions in <= 5x the wall time;
peak memory bounded (<= 1.5x that of 1x, and <= 4 GB); custom status <= 16 KB; no history
over 250 events; gate summaries and dashboard documents the same size at both scales
(within 25 %).
"""

from __future__ import annotations

import argparse
import json
import math
import signal
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Mapping
from pathlib import Path
from typing import Any

PARTITIONS = 3331  # the Walmart data's store x department series
SCALE = 4
WEEKS = 110
MEMBERS = "baseline,seasonal_naive,lasso"
REGION = "bench"
SEGMENTS = tuple(f"{REGION}-{f}-{v}" for f in ("large", "small") for v in ("fast", "slow"))
PRODUCTS_PER_STORE = 81  # as many departments as Walmart has
FIRST_WEEK = "2022-01-03"
WALL_RATIO_GOAL = 5.0
MEMORY_RATIO_GOAL = 1.5
MEMORY_GOAL_MB = 4096.0
CUSTOM_STATUS_GOAL = 16 * 1024
# Real jobs run long enough for a job monitor to reach its generation (MONITOR_GENERATION = 25
# polls of about 8 events each) before it continues as new: histories stay near 200 events
# whatever the number of partitions, and never grow past this.
HISTORY_EVENTS_GOAL = 250
SIZE_RATIO_GOAL = 1.25


def write_series(folder: Path, partitions: int, weeks: int, seed: int = 11) -> dict[str, Path]:
    """Standard-layout shipments of ``partitions`` store x product series and their stores."""
    import numpy as np
    import pandas as pd

    rng = np.random.default_rng(seed)
    folder.mkdir(parents=True, exist_ok=True)
    series = np.arange(partitions)
    stores_count = max(2, math.ceil(partitions / PRODUCTS_PER_STORE))  # both formats, always
    store = series % stores_count + 1
    product = series // stores_count + 1
    level = np.exp(rng.normal(2.5, 1.2, partitions))  # slow and fast movers
    week = np.arange(weeks)
    season = 1 + 0.3 * np.sin(2 * np.pi * week / 52.18)
    mean = np.outer(level, season)
    quantity = rng.poisson(mean).astype(np.int64)
    first = pd.Timestamp(FIRST_WEEK)
    frame = pd.DataFrame(
        {
            "week_start": np.tile((first + pd.to_timedelta(week * 7, unit="D")).strftime(
                "%Y-%m-%d"), partitions),
            "store_id": np.repeat([f"S{s:04d}" for s in store], weeks),
            "product_id": np.repeat([f"P{p:06d}" for p in product], weeks),
            "quantity": quantity.ravel(),
            "quantity_unit": "units",
            "returned_quantity": 0,
            "is_holiday_week": "false",
        }
    )  # fmt: skip
    shipments = folder / "shipments.csv"
    frame.to_csv(shipments, index=False)
    stores = sorted(set(store.tolist()))
    master = pd.DataFrame(
        {
            "store_id": [f"S{s:04d}" for s in stores],
            "region": REGION,
            "format": ["large" if s % 2 else "small" for s in stores],
            "zip": [f"{10000 + s:05d}" for s in stores],
            "size_sqft": [150_000 if s % 2 else 40_000 for s in stores],
        }
    )
    master.to_csv(folder / "stores.csv", index=False)
    weeks_of = (first + pd.to_timedelta(week * 7, unit="D")).strftime("%Y-%m-%d")
    pd.DataFrame(
        {
            "location_type": "zip",
            "location_id": np.repeat(master["zip"].to_numpy(), weeks),
            "date": np.tile(weeks_of, len(master)),
            "period_days": 7,
            "observation": "historical",
            "issue_date": "",
            "temperature_c": np.round(rng.normal(12, 8, len(master) * weeks), 1),
            "precipitation_mm": "",
        }
    ).to_csv(folder / "weather.csv", index=False)
    holidays = weeks_of[week % 52 == 47]  # one holiday week a year, region-wide
    pd.DataFrame(
        {"event_date": holidays, "scope": "region", "scope_id": REGION,
         "event_type": "holiday", "event_name": "holiday week", "value": ""}
    ).to_csv(folder / "events.csv", index=False)  # fmt: skip
    return {"shipments": shipments, "stores": folder / "stores.csv",
            "weather": folder / "weather.csv", "events": folder / "events.csv"}  # fmt: skip


def _overrides(members: str) -> dict[str, str]:
    return {
        "MLOPS_TASK_HUB": "benchmany",
        "MLOPS_PARTITION_MEMBERS": members,
        "MLOPS_JOB_TIMEOUT_MINUTES": "600",
        "MLOPS_POLL_FIRST_SECONDS": "2",
        "MLOPS_POLL_MIN_SECONDS": "2",
        "MLOPS_POLL_MAX_SECONDS": "10",
        "MLOPS_WEEKLY_RETRAIN_SCHEDULE": "0 0 0 1 1 *",  # no timer runs during the benchmark
        "MLOPS_STALENESS_SCHEDULE": "0 0 0 1 1 *",
        "MLOPS_DRIFT_SCHEDULE": "0 0 0 1 1 *",
    }


def run_once(partitions: int, weeks: int, members: str, segments: int = 4) -> dict[str, Any]:
    """Train ``partitions`` partitions through the app on a fresh runtime in this process."""
    import logging

    from local.hosting.demo import http_json, status_url
    from local.hosting.runtime import LocalRuntime
    from local.processes import TreeRss

    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    with tempfile.TemporaryDirectory(prefix="bench-many-") as tmp:
        state = Path(tmp)
        files = write_series(state / "drop", partitions, weeks)
        runtime = LocalRuntime(state_dir=state / "local", persist_storage=False,
                               overrides=_overrides(members))  # fmt: skip
        with TreeRss(interval=0.25) as memory, runtime:
            from composition import get_services

            services = get_services()
            week = _condition(services, files)
            assert runtime.host is not None and runtime.host.durable is not None
            host, key = runtime.host, runtime.host.keys.default_function_key
            body = {"segments": list(SEGMENTS[:segments]), "week": week, "many_models": True,
                    "idempotencyKey": uuid.uuid4().hex}  # fmt: skip
            started = time.monotonic()
            code, payload = http_json(f"{host.base_url}/api/orchestrations/train?code={key}",
                                      body, "POST")  # fmt: skip
            if code not in (200, 202):
                raise SystemExit(f"the start request answered {code}: {payload}")
            instance = payload["id"]
            view: dict[str, Any] = {}
            while view.get("runtimeStatus") not in ("Completed", "Failed", "Terminated"):
                time.sleep(2)
                _, view = http_json(status_url(host, key, instance))
            wall = time.monotonic() - started
            result = _measure(runtime, services, instance, view)
        result.update(partitions_asked=partitions, weeks=weeks, members=members,
                      segments_asked=segments, wall_seconds=wall,
                      peak_rss_mb=memory.peak_mb)  # fmt: skip
        return result


def _condition(services: Any, files: Mapping[str, Path]) -> str:
    """Drop the files into the raw container; wait for the blob trigger; the week to train."""
    import threading

    from local.hosting.demo import wait_for_versions

    lake, raw = services.data_lake, services.settings.raw_container
    lake.ensure_container(raw)
    names = {}
    for source, path in files.items():
        names[source] = f"{source}/bench/{path.name}"
        with path.open("rb") as handle:
            lake.write(raw, names[source], handle)
    found = wait_for_versions(services, names, threading.Event(), timeout=900)
    bad = {s: v.status for s, v in found.items() if v.status != "conditioned"}
    if bad:
        raise SystemExit(f"the drop was not conditioned: {bad}")
    return str(found["shipments"].period_end)[:10]


def _measure(runtime: Any, services: Any, instance: str, view: Mapping[str, Any]) -> dict[str, Any]:
    from local.aml.store import JobStore

    durable = runtime.host.durable
    tree = [v.instance_id for v in durable.list_instances(prefix=instance)]
    sizes = {i: durable.history_size(i) for i in tree}
    output = view.get("output") if isinstance(view.get("output"), dict) else {}
    segments = (output or {}).get("segments") or {}
    parts = [s.get("partitions") or {} for s in segments.values()]
    store = JobStore(services.settings.local_root / "aml")
    steps: dict[str, float] = {}
    run_ms = 0
    metrics_bytes = 0
    folder = store.root / "jobs"
    jobs = sorted(p.name for p in folder.glob("train*")) if folder.is_dir() else []
    for name in jobs:
        record = store.load(name)
        for step in record.steps.values():
            if step.started_at and step.ended_at:
                steps[step.name] = steps.get(step.name, 0.0) + _seconds(
                    step.started_at, step.ended_at
                )
            run_ms += int((step.progress or {}).get("run_ms", 0))
        metrics = record.outputs.get("metrics")
        if metrics and (Path(metrics) / "metrics.json").is_file():
            metrics_bytes = max(metrics_bytes, (Path(metrics) / "metrics.json").stat().st_size)
    models = _registered(services, segments)
    pages = _dashboard(runtime)
    return {
        "status": view.get("runtimeStatus"),
        "result": (output or {}).get("status") if output else str(view.get("output"))[:300],
        "segments": len(segments),
        "partitions": sum(int(p.get("total") or 0) for p in parts),
        "partitions_passed": sum(int(p.get("passed") or 0) for p in parts),
        "promoted": len((output or {}).get("promoted") or []),
        "forecast_rows": sum(
            int((s.get("forecasts") or {}).get("rows") or 0)
            for s in (((output or {}).get("score") or {}).get("segments") or {}).values()
        ),
        "steps_seconds": steps,
        "run_seconds": run_ms / 1000,
        "models": models,
        "gate_summary_bytes": max((len(json.dumps(p)) for p in parts), default=0),
        "metrics_json_bytes": metrics_bytes,
        "output_bytes": len(json.dumps(output)),
        "peak_status_bytes": max(durable.peak_custom_status_bytes(i) for i in tree),
        "largest_history_events": max(e for e, _ in sizes.values()),
        "instances": len(tree),
        "dashboard": pages,
    }


def _seconds(start: str, end: str) -> float:
    from datetime import datetime

    def parse(text: str) -> datetime:
        return datetime.fromisoformat(text.replace("Z", "+00:00"))

    return (parse(end) - parse(start)).total_seconds()


def _registered(services: Any, segments: Mapping[str, Any]) -> dict[str, Any]:
    """Per segment model: version, partition forecasters in its artefacts, bytes."""
    from urllib.parse import urlparse

    from mlflow.tracking import MlflowClient

    from pipelines.src.forecasting import many

    uri = services.settings.tracking_uri
    client = MlflowClient(tracking_uri=uri, registry_uri=uri)
    out: dict[str, Any] = {}
    for segment, seg in segments.items():
        if not seg.get("model_version"):
            continue
        version = client.get_model_version(seg["model_name"], str(seg["model_version"]))
        folder = Path(urlparse(str(version.source)).path)
        artefact = next(folder.rglob(many.PARTITIONS_ARCHIVE), None) if folder.is_dir() else None
        forecasters = many.archived_forecasters(artefact) if artefact is not None else 0
        size = sum(p.stat().st_size for p in folder.rglob("*") if p.is_file()) if forecasters else 0
        out[segment] = {"version": str(version.version), "forecasters": forecasters, "bytes": size}
    return out


def _dashboard(runtime: Any) -> dict[str, Any]:
    from dashboard.summary import DOCUMENTS, FORECAST_KEYS
    from local.hosting.walmart import fetch_dashboard

    pages = fetch_dashboard(runtime)
    pages.pop("url", None)
    from composition import get_services

    store = get_services().summary
    assert store is not None
    stored = {n: len(json.dumps(store.read(n) or {})) for n in (*DOCUMENTS, FORECAST_KEYS)}
    return {"pages": pages, "summary_bytes": stored}


def _child(partitions: int, weeks: int, members: str, segments: int) -> dict[str, Any]:
    command = [sys.executable, "-m", "benchmarks.many_models", "--child", str(partitions),
               "--weeks", str(weeks), "--members", members,
               "--segments", str(segments)]  # fmt: skip
    proc = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        out, err = proc.communicate(timeout=4 * 3600)
    except BaseException:
        # Stopped (SIGTERM, Ctrl-C) or out of time: the run stops its runtime on SIGTERM —
        # Azurite, the job launcher and the jobs it started — so ask it first.
        proc.terminate()
        try:
            proc.wait(timeout=60)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        raise
    if proc.returncode != 0:
        sys.stderr.write(err[-6000:])
        raise SystemExit(f"the {partitions}-partition run failed (exit {proc.returncode})")
    return dict(json.loads(out.strip().splitlines()[-1]))


def _exit_on_sigterm(signum: int, frame: object) -> None:
    raise SystemExit(128 + signum)  # unwinds the runtime's context: its children are stopped


def goals(base: Mapping[str, Any], scaled: Mapping[str, Any]) -> list[tuple[str, bool]]:
    def ratio(key: str) -> float:
        return float(scaled[key]) / float(base[key]) if base[key] else math.inf

    dashboard = [scaled["dashboard"]["summary_bytes"][n] / max(1, base["dashboard"][
        "summary_bytes"][n]) for n in base["dashboard"]["summary_bytes"]]  # fmt: skip
    pages_ok = all(str(v).startswith("200") for r in (base, scaled)
                   for v in r["dashboard"]["pages"].values())  # fmt: skip
    return [
        ("both runs complete and train every partition of their segments",
         base["status"] == scaled["status"] == "Completed"
         and all(_all_trained(r) for r in (base, scaled))),
        (f"{ratio('partitions'):.0f}x partitions in <= {WALL_RATIO_GOAL:g}x the wall time",
         ratio("wall_seconds") <= WALL_RATIO_GOAL),
        (f"peak memory <= {MEMORY_RATIO_GOAL:g}x the 1x run's and <= {MEMORY_GOAL_MB:.0f} MB",
         ratio("peak_rss_mb") <= MEMORY_RATIO_GOAL
         and scaled["peak_rss_mb"] <= MEMORY_GOAL_MB),
        (f"custom status <= {CUSTOM_STATUS_GOAL:,} B",
         max(base["peak_status_bytes"], scaled["peak_status_bytes"]) <= CUSTOM_STATUS_GOAL),
        (f"no history over {HISTORY_EVENTS_GOAL} events",
         max(base["largest_history_events"], scaled["largest_history_events"])
         <= HISTORY_EVENTS_GOAL),
        (f"gate summaries bounded (<= {SIZE_RATIO_GOAL:g}x)",
         ratio("gate_summary_bytes") <= SIZE_RATIO_GOAL
         and ratio("metrics_json_bytes") <= SIZE_RATIO_GOAL),
        (f"dashboard served, its documents bounded (<= {SIZE_RATIO_GOAL:g}x, forecasts aside)",
         pages_ok and all(r <= SIZE_RATIO_GOAL for n, r in zip(
             base["dashboard"]["summary_bytes"], dashboard, strict=True)
             if n != "forecast_keys")),
    ]  # fmt: skip


def _all_trained(run: Mapping[str, Any]) -> bool:
    """Every series trained: all of them with the four segments, some with fewer."""
    if run["segments_asked"] == len(SEGMENTS):
        return bool(run["partitions"] == run["partitions_asked"])
    return bool(0 < run["partitions"] <= run["partitions_asked"])


def _print(base: Mapping[str, Any], scaled: Mapping[str, Any]) -> None:
    print(
        f"\nMany-models benchmark: {base['partitions_asked']:,} and "
        f"{scaled['partitions_asked']:,} partitions, {base['weeks']} weeks each, members "
        f"{base['members']}, on the local runtime (real executor, registry, dashboard)\n"
    )
    rows: list[tuple[str, Any, Any]] = [
        ("train run status", base["status"], scaled["status"]),
        ("partitions trained", base["partitions"], scaled["partitions"]),
        ("partitions passing their gate", base["partitions_passed"],
         scaled["partitions_passed"]),
        ("segments promoted", base["promoted"], scaled["promoted"]),
        ("forecast rows", base["forecast_rows"], scaled["forecast_rows"]),
        ("wall time of the train run (s)", base["wall_seconds"], scaled["wall_seconds"]),
        *[(f"  step {s}, summed over segment jobs (s)", base["steps_seconds"].get(s, 0.0),
           scaled["steps_seconds"].get(s, 0.0)) for s in ("prep", "train", "collect",
                                                          "register")],
        ("  time inside run(), summed (s)", base["run_seconds"], scaled["run_seconds"]),
        ("peak RSS, whole process tree (MB)", base["peak_rss_mb"], scaled["peak_rss_mb"]),
        ("largest segment model (MB)", _largest(base), _largest(scaled)),
        ("gate summary in the run's output (B)", base["gate_summary_bytes"],
         scaled["gate_summary_bytes"]),
        ("largest metrics.json (B)", base["metrics_json_bytes"], scaled["metrics_json_bytes"]),
        ("train run output (B)", base["output_bytes"], scaled["output_bytes"]),
        ("largest custom status (B)", base["peak_status_bytes"], scaled["peak_status_bytes"]),
        ("largest history (events)", base["largest_history_events"],
         scaled["largest_history_events"]),
        *[(f"dashboard document {n} (B)", base["dashboard"]["summary_bytes"][n],
           scaled["dashboard"]["summary_bytes"][n]) for n in base["dashboard"]["summary_bytes"]],
    ]  # fmt: skip
    print(f"{'measure':<46} {'1x':>12} {'scaled':>12} {'ratio':>7}")
    # (with --scale 1 both columns are the one run)
    print("-" * 80)
    for label, a, b in rows:
        if isinstance(a, int | float) and isinstance(b, int | float):
            ratio = f"{b / a:.2f}" if a else "-"
            print(f"{label:<46} {a:>12,.1f} {b:>12,.1f} {ratio:>7}")
        else:
            print(f"{label:<46} {a!s:>12} {b!s:>12}")
    for label, run in (("1x", base), ("scaled", scaled)):
        pages = ", ".join(f"{k} {v}" for k, v in run["dashboard"]["pages"].items())
        print(f"dashboard pages ({label}): {pages}")


def _largest(run: Mapping[str, Any]) -> float:
    return max((m["bytes"] for m in run["models"].values()), default=0) / (1 << 20)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--partitions", type=int, default=PARTITIONS)
    parser.add_argument("--scale", type=int, default=SCALE)
    parser.add_argument("--weeks", type=int, default=WEEKS)
    parser.add_argument("--members", default=MEMBERS)
    parser.add_argument(
        "--segments", type=int, default=4, choices=range(1, 5),
        help="train the first N of the region's segments (4: all; fewer for smoke runs)",
    )  # fmt: skip
    parser.add_argument("--json", type=Path, default=None, help="also write the results here")
    parser.add_argument("--child", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    signal.signal(signal.SIGTERM, _exit_on_sigterm)
    if args.weeks < 40:
        parser.error("--weeks must leave a year-short history room for holdout and validation")
    if args.child:
        run = run_once(args.child, args.weeks, args.members, args.segments)
        print(json.dumps(run, default=str))
        return 0
    if args.scale < 1:
        parser.error("--scale must be at least 1")
    base = _child(args.partitions, args.weeks, args.members, args.segments)
    # --scale 1 (smoke runs): one run, checked against the goals that need no second size.
    scaled = (
        base
        if args.scale == 1
        else _child(args.partitions * args.scale, args.weeks, args.members, args.segments)
    )
    _print(base, scaled)
    checked = goals(base, scaled)
    print()
    for name, ok in checked:
        print(f"{'meets' if ok else 'MISSES'}: {name}")
    if args.json:
        result = {"runs": [base, scaled], "goals": [{"goal": n, "holds": ok} for n, ok in checked]}
        args.json.write_text(json.dumps(result, indent=1, default=str))
    return 0


if __name__ == "__main__":
    sys.exit(main())
