"""The train loop at scale: 56 segments (the case study's 14 regions × 4) against 500.

Each size runs in a fresh process on the real local runtime: the function app on the local
Functions host, Azurite, the Durable Task engine, and an MLflow sqlite registry. Only the
Azure ML control plane is scripted (``local.aml.scripted``): each train job takes
``--job-seconds`` and registers a model version. The run starts like ADF does
(``POST /api/orchestrations/train``) and polls the app's status endpoint until it is done.
The scripted workspace publishes no Event Grid events here, so the model tests they would
start do not share the machine with the training being measured.

Printed per size: wall time from the start request to ``Completed``; history of the train
instance itself and of the largest instance in its tree (events, and bytes of the Durable
Task protobuf events); instances in the tree; the largest custom status any of them set
(UTF-16 bytes, as Azure counts it); peak RSS of the runtime process and of Azurite; then
the 500/56 ratios.

Goals: both runs complete; every custom status <= 16 KB; no instance's history over
``HISTORY_EVENTS_GOAL`` events; the 500-segment wall time <= 10 × the 56-segment one.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import logging
import os
import resource
import subprocess
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.request
import uuid
from collections.abc import Mapping
from pathlib import Path
from typing import Any

BASELINE_SEGMENTS = 56
SCALED_SEGMENTS = 500
HISTORY_EVENTS_GOAL = 200
CUSTOM_STATUS_GOAL = 16 * 1024
WALL_RATIO_GOAL = 10.0
WEEK = "2026-11-23"
_OPENER = urllib.request.build_opener(urllib.request.ProxyHandler({}))


def _call(url: str, body: Any = None, method: str = "GET") -> tuple[int, Any]:
    data = None if body is None else json.dumps(body).encode()
    request = urllib.request.Request(  # noqa: S310 - the local host on loopback
        url, data=data, method=method, headers={"Content-Type": "application/json"}
    )
    try:
        with _OPENER.open(request, timeout=120) as response:
            raw = response.read()
            return response.status, json.loads(raw) if raw else None
    except urllib.error.HTTPError as exc:
        raw = exc.read()
        return exc.code, json.loads(raw) if raw else None


def _environment(state: Path, connection: str) -> dict[str, str]:
    from local.hosting.runtime import isolated_environment

    return isolated_environment(
        state,
        connection,
        {
            "MLOPS_TASK_HUB": "benchloop",
            "MLOPS_SMTP_PORT": "1",  # nothing fails in this run, so nothing is mailed
            "MLOPS_POLL_FIRST_SECONDS": "1",
            "MLOPS_POLL_MIN_SECONDS": "1",
            "MLOPS_POLL_MAX_SECONDS": "2",
            "MLOPS_JOB_TIMEOUT_MINUTES": "60",
            "MLOPS_WEEKLY_RETRAIN_SCHEDULE": "0 0 0 1 1 *",  # no timer run during the bench
            "MLOPS_STALENESS_SCHEDULE": "0 0 0 1 1 *",
            "MLOPS_DRIFT_SCHEDULE": "0 0 0 1 1 *",
        },
    )


def _seed_conditioned_data() -> None:
    """One conditioned version of every training source, as conditioning registers it."""
    from adapters.datasets import DatasetVersion
    from composition import get_services

    services = get_services()
    assert services.datasets is not None
    container = services.settings.conditioned_container
    services.data_lake.ensure_container(container)
    for source in services.settings.automation.training_sources:
        blob = f"{source}/v1/part-00000.csv"
        services.data_lake.write(container, blob, b"store_id,value\n1,2\n")
        services.datasets.register(
            DatasetVersion(
                source=source, dataset_version="v1", status="conditioned", input_name=source,
                input_etag="e", input_sha256="x", manifest=f"{source}/v1/manifest.json",
                files=(f"{container}/{blob}",), rows_in=1, rows_out=1, period_end=WEEK,
                registered_at=f"{WEEK}T00:00:00+00:00",
            )
        )  # fmt: skip


def _mlflow_register(tracking_uri: str, models: Path) -> Any:
    """Register a model version in the MLflow registry, as the train pipeline's step does."""
    # Imported here, once: mlflow's first import is not safe from many job threads at once.
    from mlflow.exceptions import MlflowException
    from mlflow.tracking import MlflowClient

    lock = threading.Lock()  # one writer at a time, as a real registry service would queue them
    client = MlflowClient(tracking_uri=tracking_uri, registry_uri=tracking_uri)
    client.search_registered_models()  # creates the sqlite schema now, outside the timing

    def register(model: str, job: str, tags: Mapping[str, str]) -> str:
        folder = models / job
        folder.mkdir(parents=True, exist_ok=True)
        with lock:
            with contextlib.suppress(MlflowException):
                client.create_registered_model(model)
            return str(client.create_model_version(model, str(folder), tags=dict(tags)).version)

    return register


def _peak_rss_kb(pid: int) -> int:
    """VmHWM of another process (Linux), 0 when unknown."""
    try:
        for line in Path(f"/proc/{pid}/status").read_text(encoding="utf-8").splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1])
    except OSError:
        return 0
    return 0


def run_once(segments: int, job_seconds: float) -> dict[str, Any]:
    """Train ``segments`` segments on a fresh runtime in this process; return the measures."""
    from adapters.events import NullEventPublisher
    from local.aml.scripted import Script, ScriptedPipelineJobs
    from local.hosting.azurite import Azurite
    from local.hosting.host import HostConfig, LocalFunctionsHost
    from local.processes import free_port

    if segments % 4:
        raise SystemExit("segments must be a multiple of 4 (regions × formats × velocities)")
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    with tempfile.TemporaryDirectory(prefix="bench-loop-") as tmp, Azurite() as azurite:
        state = Path(tmp)
        os.environ.update(_environment(state, azurite.connection_string))
        from adapters.settings import load_settings
        from composition import build_services, use_services

        settings = load_settings()
        services = build_services(settings)
        jobs = ScriptedPipelineJobs(
            NullEventPublisher(),
            _mlflow_register(settings.tracking_uri, state / "models"),
            state / "jobs",
            Script(duration=job_seconds),
        )
        services.pipeline_jobs = jobs
        use_services(services)
        _seed_conditioned_data()
        assert services.model_registry is not None
        services.model_registry.get_by_alias("forecast-warm-up", "champion")  # open the store
        import function_app

        config = HostConfig(
            state_dir=state, environ=os.environ, task_hub=settings.task_hub, port=free_port()
        )
        with LocalFunctionsHost(function_app.app.get_functions(), config) as host:
            assert host.durable is not None
            key = host.keys.default_function_key
            regions = [f"r{i:03d}" for i in range(1, segments // 4 + 1)]
            body = {"regions": regions, "week": WEEK, "idempotencyKey": uuid.uuid4().hex}
            started = time.monotonic()
            status, payload = _call(
                f"{host.base_url}/api/orchestrations/train?code={key}", body, "POST"
            )
            if status != 200:
                raise SystemExit(f"the start request answered {status}: {payload}")
            instance = payload["id"]
            status_url = f"{host.base_url}/api/orchestrations/{instance}?code={key}"
            view: dict[str, Any] = {}
            while True:
                _, view = _call(status_url)
                if view.get("runtimeStatus") in ("Completed", "Failed", "Terminated"):
                    break
                time.sleep(0.5)
            wall = time.monotonic() - started
            durable = host.durable
            tree = [v.instance_id for v in durable.list_instances(prefix=instance)]
            sizes = {i: durable.history_size(i) for i in tree}
            largest = max(tree, key=lambda i: sizes[i][0])
            output = view.get("output") if isinstance(view.get("output"), dict) else {}
            return {
                "segments": segments,
                "status": view.get("runtimeStatus"),
                "result": output.get("status") if output else str(view.get("output"))[:300],
                "trained": len((output or {}).get("segments") or {}),
                "wall_seconds": wall,
                "train_events": sizes[instance][0],
                "train_bytes": sizes[instance][1],
                "largest_instance": largest.removeprefix(instance) or "(train)",
                "largest_events": sizes[largest][0],
                "largest_bytes": sizes[largest][1],
                "instances": len(tree),
                "peak_status_bytes": max(durable.peak_custom_status_bytes(i) for i in tree),
                "train_status_bytes": durable.peak_custom_status_bytes(instance),
                "jobs": len(jobs.submissions),
                "rss_kb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss,
                "azurite_rss_kb": _peak_rss_kb(azurite.pid) if azurite.pid else 0,
            }


def _child(segments: int, job_seconds: float) -> dict[str, Any]:
    command = [sys.executable, "-m", "benchmarks.loop", "--child", str(segments),
               "--job-seconds", str(job_seconds)]  # fmt: skip
    proc = subprocess.run(command, capture_output=True, text=True, check=False, timeout=7200)
    if proc.returncode != 0:
        sys.stderr.write(proc.stderr[-4000:])
        raise SystemExit(f"the {segments}-segment run failed (exit {proc.returncode})")
    return dict(json.loads(proc.stdout.strip().splitlines()[-1]))


def _row(label: str, r: Mapping[str, Any]) -> str:
    return (
        f"{label:<9} {r['status']:<10} {r['trained']:>7} {r['wall_seconds']:>8.1f} "
        f"{r['train_events']:>7} {r['train_bytes'] / 1024:>8.1f} {r['largest_events']:>8} "
        f"{r['largest_bytes'] / 1024:>8.1f} {r['instances']:>6} {r['peak_status_bytes']:>8,} "
        f"{r['rss_kb'] / 1024:>7.0f} {r['azurite_rss_kb'] / 1024:>7.0f}"
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--job-seconds", type=float, default=3.0)
    parser.add_argument(
        "--segments", type=int, nargs=2, default=[BASELINE_SEGMENTS, SCALED_SEGMENTS]
    )
    parser.add_argument("--child", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child:
        print(json.dumps(run_once(args.child, args.job_seconds)))
        return 0
    small, large = args.segments
    base = _child(small, args.job_seconds)
    scaled = _child(large, args.job_seconds)

    print(f"\nTrain loop benchmark: {small} and {large} segments on the local runtime, scripted")
    print(f"Azure ML jobs of {args.job_seconds:g} s each; history = Durable Task events and KB;")
    print("status = largest custom status in the run's tree (UTF-16 bytes, Azure caps 16 KB)\n")
    header = (
        f"{'segments':<9} {'status':<10} {'trained':>7} {'wall s':>8} {'train ev':>7} "
        f"{'train KB':>8} {'max ev':>8} {'max KB':>8} {'inst':>6} {'status B':>8} "
        f"{'RSS MB':>7} {'azur MB':>7}"
    )
    print(header)
    print("-" * len(header))
    print(_row(str(small), base))
    print(_row(str(large), scaled))

    def ratio(key: str) -> float:
        return float(scaled[key]) / float(base[key]) if base[key] else float("nan")

    print(
        f"{'ratio':<9} {'':<10} {ratio('trained'):>7.2f} {ratio('wall_seconds'):>8.2f} "
        f"{ratio('train_events'):>7.2f} {ratio('train_bytes'):>8.2f} "
        f"{ratio('largest_events'):>8.2f} {ratio('largest_bytes'):>8.2f} "
        f"{ratio('instances'):>6.2f} {ratio('peak_status_bytes'):>8.2f} {ratio('rss_kb'):>7.2f} "
        f"{ratio('azurite_rss_kb'):>7.2f}"
    )
    print(
        f"\nlargest history: {base['largest_instance']} ({small}), "
        f"{scaled['largest_instance']} ({large})"
    )
    goals = [
        ("both runs complete", base["status"] == scaled["status"] == "Completed"),
        (
            f"custom status <= {CUSTOM_STATUS_GOAL:,} B",
            max(base["peak_status_bytes"], scaled["peak_status_bytes"]) <= CUSTOM_STATUS_GOAL,
        ),
        (
            f"no history over {HISTORY_EVENTS_GOAL} events",
            max(base["largest_events"], scaled["largest_events"]) <= HISTORY_EVENTS_GOAL,
        ),
        (f"{large}/{small} wall time <= {WALL_RATIO_GOAL:g}x", ratio("wall_seconds") <= 10),
    ]
    for name, ok in goals:
        print(f"{'meets' if ok else 'MISSES'}: {name}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
