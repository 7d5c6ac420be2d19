"""The end-to-end demo behind ``make run``: the case study's weekly loop on one machine.

1. Synthetic raw drops for three regions land in the raw container (vendor layouts, a few
   defective rows) and the blob trigger conditions them.
2. An ADF-style call starts ``train``; the demo polls the app's ``GET
   /api/orchestrations/{id}`` the way the ADF pipeline's Until + Web activities do. One Azure
   ML job per segment runs on the local executor; each registered model's ``ModelRegistered``
   event starts an offline model test; promoted champions are scored.
3. A second call trains a region that has no data yet: its job fails, and Ops gets one email.
4. A summary says what happened and where to look.

Everything goes through the app's public surfaces (blobs, HTTP, Event Grid, the Durable API),
exactly as in Azure.
"""

from __future__ import annotations

import json
import threading
import time
import urllib.error
import urllib.request
from datetime import date, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from composition import Services
    from local.hosting.host import LocalFunctionsHost
    from local.hosting.runtime import LocalRuntime

REGIONS = ("r01", "r02", "r03")
MISSING_REGION = "r99"
# Which generated file goes to which source folder of the raw container.
UPLOADS = {
    "shipments": "shipments_vendor_eu.csv",
    "stores": "stores.csv",
    "weather": "weather.csv",
    "events": "events.jsonl",
    "demographics": "demographics.xlsx",
    "returns": "returns.parquet",
}
WEEKS = 80


class DemoStopped(Exception):
    """Ctrl-C during the demo."""


def _say(text: str) -> None:
    print(text, flush=True)


def _http(url: str, body: Any = None, method: str | None = None) -> tuple[int, Any]:
    data = None if body is None else json.dumps(body).encode()
    if not url.startswith("http://127.0.0.1:"):
        raise ValueError(f"the demo only calls the local host, not {url}")
    request = urllib.request.Request(  # noqa: S310 - loopback http only (checked above)
        url, data=data, method=method, headers={"Content-Type": "application/json"}
    )
    try:
        with urllib.request.urlopen(request, timeout=60) as response:  # noqa: S310 - loopback only
            raw = response.read()
            return response.status, json.loads(raw) if raw else None
    except urllib.error.HTTPError as exc:
        raw = exc.read()
        return exc.code, json.loads(raw) if raw else None


def _wait(stop: threading.Event, seconds: float) -> None:
    if stop.wait(seconds):
        raise DemoStopped


def upload_drops(services: Services, folder: Path) -> dict[str, str]:
    """Generate the three-region drop and upload it; returns source → blob name."""
    from conditioning.synthetic import SyntheticSpec, write_drop

    spec = SyntheticSpec(
        regions=len(REGIONS), stores_per_region=4, products=9, weeks=WEEKS, defect_rate=0.01
    )
    write_drop(folder, spec)
    lake, raw = services.data_lake, services.settings.raw_container
    lake.ensure_container(raw)
    batch = (spec.first_week + timedelta(weeks=WEEKS - 1)).isoformat()
    names: dict[str, str] = {}
    for source, filename in UPLOADS.items():
        blob = f"{source}/{batch}/{filename}"
        lake.write(raw, blob, (folder / filename).read_bytes())
        names[source] = blob
    return names


def wait_for_conditioning(
    services: Services, names: dict[str, str], stop: threading.Event, timeout: float = 300
) -> dict[str, Any]:
    """Block until every uploaded blob has a registered dataset version."""
    assert services.datasets is not None
    deadline = time.monotonic() + timeout
    done: dict[str, Any] = {}
    while len(done) < len(names):
        for source, blob in names.items():
            if source in done:
                continue
            for version in services.datasets.versions(source):
                if version.input_name.endswith(blob):
                    done[source] = version
                    _say(
                        f"  {source:<13} {version.status:<12} rows in {version.rows_in:>6}  "
                        f"out {version.rows_out:>6}  rejected {version.rows_rejected:>4}"
                    )
        if time.monotonic() > deadline:
            raise TimeoutError(f"conditioning did not finish: waiting for {set(names) - set(done)}")
        _wait(stop, 0.5)
    return done


def poll_like_adf(
    status_url: str, stop: threading.Event, label: str, timeout: float = 900
) -> dict[str, Any]:
    """Until runtimeStatus is terminal: Wait, then a Web activity GET on the status endpoint.

    ``timeout`` bounds the time without progress (no change in status or custom status), not
    the whole run: a busy machine trains slower, but a run that stalls still ends the demo.
    """
    deadline = time.monotonic() + timeout
    last = ""
    while time.monotonic() < deadline:
        _, body = _http(status_url)
        status = (body or {}).get("runtimeStatus", "")
        custom = (body or {}).get("customStatus") or {}
        custom = custom if isinstance(custom, dict) else {}
        progress = _progress(custom)
        line = f"  [{label}] {status} {custom.get('stage', '')}"
        line = f"{line} {progress}".rstrip()
        if line != last:
            _say(line)
            last = line
            deadline = time.monotonic() + timeout
        if status in ("Completed", "Failed", "Terminated", "Canceled"):
            return dict(body)
        _wait(stop, 3)
    raise TimeoutError(f"{label} made no progress in {timeout:.0f}s")


def _status_url(host: LocalFunctionsHost, key: str, instance: str) -> str:
    """The app's own status endpoint (function key), which the ADF pipeline polls."""
    return f"{host.base_url}/api/orchestrations/{instance}?code={key}"


def _progress(custom: dict[str, Any]) -> str:
    """``8/12 finished: champion=5, failed=1`` from a train run's custom status (counts only:
    the status stays small however many segments run; details are in the output)."""
    if not isinstance(custom.get("finished"), int) or not isinstance(custom.get("segments"), int):
        return ""
    outcomes = custom.get("outcomes") or {}
    counts = ", ".join(f"{k}={v}" for k, v in sorted(outcomes.items()))
    return f"{custom['finished']}/{custom['segments']} finished" + (f": {counts}" if counts else "")


def _management_url(runtime: LocalRuntime, instance: str) -> str:
    assert runtime.host is not None
    key = runtime.host.keys.system_keys["durabletask_extension"]
    return f"{runtime.host.base_url}/runtime/webhooks/durabletask/instances/{instance}?code={key}"


def run(runtime: LocalRuntime, stop: threading.Event) -> dict[str, Any]:
    """Run the demo against a started runtime; returns the summary it prints."""
    from composition import get_services

    try:
        return _run(runtime, stop, get_services())
    except DemoStopped:
        _say("Demo interrupted.")
        return {}


def _run(runtime: LocalRuntime, stop: threading.Event, services: Services) -> dict[str, Any]:
    assert runtime.host is not None
    host = runtime.host
    started = time.monotonic()
    key = host.keys.default_function_key
    _say("\n== 1. Raw drops for three regions land in blob storage")
    names = upload_drops(services, runtime.state_dir / "demo" / "raw")
    for blob in names.values():
        _say(f"  uploaded {services.settings.raw_container}/{blob}")
    _say("  conditioning (blob trigger):")
    conditioned = wait_for_conditioning(services, names, stop)
    shipments = conditioned["shipments"]
    week = date.fromisoformat((shipments.period_end or "2025-06-30")[:10])
    week -= timedelta(days=week.weekday())

    _say("\n== 2. Azure Data Factory starts training (Azure Function activity)")
    body = {"regions": list(REGIONS), "week": week.isoformat(), "scoring_date": week.isoformat()}
    status, payload = _http(f"{host.base_url}/api/orchestrations/train?code={key}", body, "POST")
    _say(f"  POST /api/orchestrations/train -> {status}, instance {payload.get('id')}")
    _say("  polling GET /api/orchestrations/{id} like the ADF Until loop:")

    _say("\n== 3. Meanwhile, a region onboarded before its data arrived is trained too")
    failing_body = {"segments": [f"{MISSING_REGION}-large-fast"], "week": week.isoformat()}
    f_status, failing = _http(
        f"{host.base_url}/api/orchestrations/train?code={key}", failing_body, "POST"
    )
    _say(f"  POST /api/orchestrations/train -> {f_status}, instance {failing.get('id')}")

    # Twelve segments train in one batch, so the run's status moves only when all are done:
    # allow for a busy two-core machine (about 14 minutes measured under load).
    train = poll_like_adf(_status_url(host, key, payload["id"]), stop, "train", timeout=2400)
    failed_run = poll_like_adf(_status_url(host, key, failing["id"]), stop, "train r99")

    output = train.get("output")
    if not isinstance(output, dict):  # a failed orchestration's output is its error
        _say(f"  train failed: {output}")
        output = {}
    _say("\n== 4. Offline model tests started by ModelRegistered events")
    segments: dict[str, Any] = output.get("segments") or {}
    tests: dict[str, Any] = {}
    for segment, result in sorted(segments.items()):
        if not result.get("model_version"):
            continue
        instance = f"model_test-{result['model_name']}-{result['model_version']}"
        tests[segment] = poll_like_adf(_management_url(runtime, instance), stop, instance)

    _say("\n== 5. Alerts")
    # Failures are recorded in the outbox; its timer (every minute) sends the email.
    deadline = time.monotonic() + 90
    mails: list[Path] = []
    while time.monotonic() < deadline:
        mails = runtime.smtp.messages() if runtime.smtp else []
        if mails:
            break
        _wait(stop, 1)
    for mail in mails:
        _say(f"  {mail}")
    summary = _summary(runtime, services, train, failed_run, tests, mails, started)
    _print_summary(summary)
    return summary


def _summary(
    runtime: LocalRuntime,
    services: Services,
    train: dict[str, Any],
    failed_run: dict[str, Any],
    tests: dict[str, Any],
    mails: list[Path],
    started: float,
) -> dict[str, Any]:
    assert runtime.host is not None
    output = train.get("output")
    output = output if isinstance(output, dict) else {}
    rows = []
    for segment, result in sorted((output.get("segments") or {}).items()):
        metrics = result.get("metrics") or {}
        candidate = metrics.get("candidate") or {}
        baseline = metrics.get("baseline") or {}
        test = (tests.get(segment) or {}).get("output") or {}
        scored = ((output.get("score") or {}).get("segments") or {}).get(segment) or {}
        rows.append(
            {
                "segment": segment,
                "status": result.get("status"),
                "decision": result.get("decision", "-"),
                "model": f"{result.get('model_name')}:{result.get('model_version')}",
                "mape": candidate.get("mape"),
                "baseline_mape": baseline.get("mape"),
                "model_test": _test_result(test),
                "forecasts": (scored.get("forecasts") or {}).get("blob", "-"),
                "error": result.get("error", ""),
            }
        )
    failed_output = failed_run.get("output") or failed_run.get("customStatus") or {}
    return {
        "train_instance": train.get("instanceId"),
        "train_status": train.get("runtimeStatus"),
        "train_result": output.get("status"),
        "segments": rows,
        "failing_run": {
            "instance": failed_run.get("instanceId"),
            "runtimeStatus": failed_run.get("runtimeStatus"),
            "detail": failed_output,
        },
        "emails": [str(m) for m in mails],
        "forecasts_container": services.settings.forecasts_container,
        "job_logs": str(services.settings.local_root / "aml" / "jobs"),
        "dashboard": runtime.describe()["dashboard"],
        "seconds": round(time.monotonic() - started, 1),
    }


def _test_result(test: dict[str, Any]) -> str:
    verdict = test.get("verdict") or {}
    if "passed" in verdict:
        return "passed" if verdict["passed"] else "failed"
    return str(test.get("status", "-"))


def _fmt(value: Any) -> str:
    return f"{value:.3f}" if isinstance(value, int | float) else "-"


def _print_summary(summary: dict[str, Any]) -> None:
    _say("\n== Summary")
    _say(
        f"  train {summary['train_instance']}: {summary['train_status']} "
        f"({summary['train_result']}) in {summary['seconds']} s"
    )
    header = (
        f"  {'segment':<16} {'decision':<11} {'MAPE':>6} {'base':>6}  {'model':<26} {'test':<8}"
    )
    _say(header)
    for row in summary["segments"]:
        _say(
            f"  {row['segment']:<16} {row['decision']:<11} {_fmt(row['mape']):>6} "
            f"{_fmt(row['baseline_mape']):>6}  {row['model']:<26} {row['model_test']:<8}"
            + (f"  {row['error'][:60]}" if row["error"] else "")
        )
    failing = summary["failing_run"]
    _say(f"  injected failure {failing['instance']}: {failing['runtimeStatus']}")
    _say(f"  alert emails: {len(summary['emails'])}")
    for mail in summary["emails"]:
        _say(f"    {mail}")
    _say(f"  forecasts: container '{summary['forecasts_container']}' in Azurite")
    _say(f"  job records and step logs: {summary['job_logs']}")
    _say(f"  dashboard: {summary['dashboard']}")
