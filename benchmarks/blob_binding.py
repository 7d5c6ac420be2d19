"""Peak memory of the process running the blob trigger, for a large raw drop through the local host.

    python -m benchmarks.blob_binding [--mb 250 --mb 1024] [--methods sdk,inputstream,download,idle]

For each size it generates a raw shipments CSV (the benchmark generator of
``conditioning.synthetic``), uploads it to an Azurite it starts (on disk, in a temporary folder),
and runs each method in a fresh process while sampling that process's peak RSS (``VmHWM`` in
``/proc/<pid>/status``):

* sdk          the app's real blob trigger on the local host: an SDK-type ``BlobClient`` binding,
               the blob streamed through it into conditioning (what ships)
* inputstream  the same host, the same conditioning, but the trigger takes ``func.InputStream``
               and the service reads the blob again by name (the binding before the change)
* download     ``BlobClient.download_blob().readall()`` alone: the least any binding that hands
               the function the blob's bytes costs
* idle         the local host with the real app, started and polling, with nothing to do

Each conditioning run writes to fresh containers, so nothing is skipped as already seen.
Goal: ``sdk`` peak RSS <= 300 MB at 1 GB. Peak RSS includes the interpreter, the host, the
Durable engine and the libraries (pandas, pyarrow, azure SDKs), as a worker's would.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import azure.durable_functions as df

# Module level: the worker (and the local host) resolve the trigger's annotation from here.
import azure.functions as func

METHODS = ("sdk", "inputstream", "download", "idle")
GOAL_MB = 300.0
BLOB_NAME = "shipments/bench/drop.csv"
TRIGGER = "on_raw_blob_created"


def vm_hwm_mb(pid: int | str = "self") -> float | None:
    """Peak resident set size of ``pid`` in MB, from ``/proc``; None once the process is gone."""
    try:
        text = Path(f"/proc/{pid}/status").read_text(encoding="ascii")
    except (FileNotFoundError, ProcessLookupError):
        return None
    for line in text.splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return None


# ---------------------------------------------------------------- children


def _input_stream_app() -> Any:
    """The blob trigger as it was: ``func.InputStream``, then the service reads by name."""
    import asyncio
    import functools

    app = df.DFApp(http_auth_level=func.AuthLevel.FUNCTION)

    @app.blob_trigger(
        arg_name="blob",
        path="%MLOPS_RAW_CONTAINER%/{source}/{name}",
        connection="MLOPS_DATALAKE",
        source=func.BlobSource.EVENT_GRID,
    )
    async def on_raw_blob_created(blob: func.InputStream) -> None:
        from adapters.datalake import BoundBlob
        from adapters.datasets import blob_dataset_ports
        from composition import get_services
        from conditioning.service import condition_blob

        services = get_services()
        s = services.settings
        registry, signals = blob_dataset_ports(services.data_lake, s.conditioned_container)
        from azure.storage.blob import BlobClient

        name = (blob.name or "").split("/", 1)[1]
        # The old service opened the blob a second time, by name.
        client = BlobClient.from_connection_string(
            os.environ["MLOPS_DATALAKE"], s.raw_container, name
        )
        await asyncio.to_thread(
            functools.partial(
                condition_blob,
                BoundBlob(client),
                services.data_lake,
                conditioned_container=s.conditioned_container,
                quarantine_container=s.quarantine_container,
                registry=registry,
                signals=signals,
            )
        )
        # The binding's bytes stay referenced for the whole invocation, as they did.
        assert blob.length is not None

    return app


def _serve(method: str, state: Path, timeout: float) -> dict[str, Any]:
    from composition import get_services, use_services
    from local.hosting.host import HostConfig, LocalFunctionsHost

    use_services(None)
    if method == "inputstream":
        functions = _input_stream_app().get_functions()
    else:
        import function_app

        functions = function_app.app.get_functions()
    config = HostConfig(
        state_dir=state,
        environ=os.environ,
        host_id=f"bench-{uuid.uuid4().hex[:8]}",
        blob_poll_interval=0.5,
    )
    host = LocalFunctionsHost(functions, config).start()
    try:
        stats = host.blob_stats[TRIGGER]
        if method == "idle":
            time.sleep(5.0)
            return {"rows_in": 0}
        deadline = time.monotonic() + timeout
        while stats.completed + stats.failures == 0:
            if time.monotonic() > deadline:
                raise SystemExit(f"{method}: the blob trigger did not finish in {timeout:.0f}s")
            time.sleep(0.2)
        if stats.failures:
            raise SystemExit(f"{method}: the blob trigger failed; see the log above")
    finally:
        host.stop()
    datasets = get_services().datasets
    assert datasets is not None
    (version,) = datasets.versions("shipments")
    return {
        "status": version.status,
        "rows_in": version.rows_in,
        "rows_out": version.rows_out,
        "rows_rejected": version.rows_rejected,
    }


def _download() -> dict[str, Any]:
    from azure.storage.blob import BlobClient

    client = BlobClient.from_connection_string(
        os.environ["MLOPS_DATALAKE"], os.environ["MLOPS_RAW_CONTAINER"], BLOB_NAME
    )
    data = client.download_blob().readall()
    return {"bytes": len(data)}


def _child(method: str, timeout: float) -> None:
    import logging

    logging.basicConfig(level=logging.WARNING, stream=sys.stderr)
    start = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix=f"bench-blob-{method}-") as tmp:
        detail = _download() if method == "download" else _serve(method, Path(tmp), timeout)
    seconds = time.perf_counter() - start
    print(json.dumps({"seconds": seconds, "peak_rss_mb": vm_hwm_mb(), "detail": detail}))


# ---------------------------------------------------------------- parent


@dataclass(frozen=True)
class Measured:
    size_mb: int
    method: str
    peak_rss_mb: float
    seconds: float
    detail: dict[str, Any]


def _measure(method: str, env: dict[str, str], timeout: float) -> Measured:
    proc = subprocess.Popen(
        [sys.executable, "-m", "benchmarks.blob_binding", "--child", method],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    sampled = [0.0]

    def sample() -> None:
        # The parent's own reading of the child's peak, while it runs.
        while proc.poll() is None:
            value = vm_hwm_mb(proc.pid)
            if value is not None:
                sampled[0] = max(sampled[0], value)
            time.sleep(0.1)

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    out, err = proc.communicate()
    sampler.join()
    if proc.returncode != 0:
        raise SystemExit(f"{method} failed (exit {proc.returncode}):\n{err[-4000:]}")
    result = json.loads(out.strip().splitlines()[-1])
    peak = max(sampled[0], float(result["peak_rss_mb"] or 0.0))
    return Measured(0, method, peak, float(result["seconds"]), dict(result["detail"]))


def _table(rows: list[Measured]) -> str:
    lines = [
        "| input MB | method | peak RSS MB | × inputstream | over idle host MB "
        f"| seconds | ≤ {GOAL_MB:.0f} MB |",
        "|---:|---|---:|---:|---:|---:|---|",
    ]
    idle = next((r.peak_rss_mb for r in rows if r.method == "idle"), None)
    by_size: dict[int, dict[str, Measured]] = {}
    for r in rows:
        by_size.setdefault(r.size_mb, {})[r.method] = r
    for r in rows:
        old = by_size[r.size_mb].get("inputstream")
        ratio = f"{r.peak_rss_mb / old.peak_rss_mb:.2f}" if old else "-"
        over = f"{r.peak_rss_mb - idle:.0f}" if idle is not None and r.method != "idle" else "-"
        goal = "yes" if r.peak_rss_mb <= GOAL_MB else "NO"
        size = str(r.size_mb) if r.method != "idle" else "-"
        lines.append(
            f"| {size} | {r.method} | {r.peak_rss_mb:.0f} | {ratio} | {over} | "
            f"{r.seconds:.1f} | {goal} |"
        )
    return "\n".join(lines)


def _run_all(args: argparse.Namespace, methods: list[str], tmp: Path) -> list[Measured]:
    from azure.storage.blob import BlobServiceClient

    from adapters.settings import SETTINGS
    from conditioning.synthetic import write_large_shipments
    from local.hosting.azurite import Azurite

    measured: list[Measured] = []
    with Azurite(location=tmp / "azurite") as azurite:
        blobs = BlobServiceClient.from_connection_string(azurite.connection_string)
        base = {s.key: s.default for s in SETTINGS if s.default is not None}
        base.update(os.environ)
        base.update(
            {
                "AzureWebJobsStorage": azurite.connection_string,
                "MLOPS_DATALAKE": azurite.connection_string,
                "MLOPS_ENVIRONMENT": "local",
                "MLOPS_LOCAL_DIR": str(tmp / "local"),
            }
        )

        def env_for(raw: str) -> dict[str, str]:
            run = uuid.uuid4().hex[:8]
            return {
                **base,
                "MLOPS_RAW_CONTAINER": raw,
                "MLOPS_CONDITIONED_CONTAINER": f"conditioned{run}",
                "MLOPS_QUARANTINE_CONTAINER": f"quarantine{run}",
                "MLOPS_ALERTS_CONTAINER": f"alerts{run}",
            }

        if "idle" in methods:
            blobs.create_container("rawidle")
            r = _measure("idle", env_for("rawidle"), args.timeout)
            print(f"# idle host: {r.peak_rss_mb:.0f} MB", flush=True)
            measured.append(r)
        for mb in args.mb or [250]:
            path = tmp / f"shipments-{mb}mb.csv"
            rows = write_large_shipments(path, mb << 20, defect_rate=args.defect_rate)
            size_mb = path.stat().st_size / (1 << 20)
            raw = f"raw{mb}"
            blobs.create_container(raw)
            with path.open("rb") as fh:
                blobs.get_blob_client(raw, BLOB_NAME).upload_blob(fh, max_concurrency=2)
            path.unlink()
            print(f"# input {size_mb:.0f} MB, {rows:,} rows, uploaded to Azurite", flush=True)
            for method in (m for m in methods if m != "idle"):
                r = _measure(method, env_for(raw), args.timeout)
                print(f"#   {method}: {r.peak_rss_mb:.0f} MB, {r.seconds:.1f}s {r.detail}")
                if method != "download" and r.detail.get("rows_in") != rows:
                    raise SystemExit(f"{method} conditioned {r.detail}, expected {rows} rows")
                measured.append(Measured(mb, method, r.peak_rss_mb, r.seconds, r.detail))
            blobs.delete_container(raw)
    return measured


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m benchmarks.blob_binding", description=__doc__)
    p.add_argument("--mb", type=int, action="append", help="input size in MB (repeatable)")
    p.add_argument("--methods", default=",".join(METHODS))
    p.add_argument("--defect-rate", type=float, default=0.001)
    p.add_argument("--timeout", type=float, default=1800.0, help="per run, seconds")
    p.add_argument("--tmp", type=Path, default=None, help="where inputs and Azurite's data go")
    p.add_argument("--json", type=Path, default=None, help="also write the results here")
    p.add_argument("--child", metavar="METHOD", help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.child:
        _child(args.child, args.timeout)
        return 0
    methods = [m for m in args.methods.split(",") if m]
    unknown = sorted(set(methods) - set(METHODS))
    if unknown:
        p.error(f"unknown method(s) {unknown}; choose from {list(METHODS)}")
    with tempfile.TemporaryDirectory(prefix="bench-blob-", dir=args.tmp) as tmp:
        measured = _run_all(args, methods, Path(tmp))
    print()
    print(_table(measured))
    if args.json:
        rows = [{**m.__dict__, "goal_mb": GOAL_MB} for m in measured]
        args.json.write_text(json.dumps({"measured": rows}, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
