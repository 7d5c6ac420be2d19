"""The Walmart run behind ``python -m local run --dataset walmart``: real files, the whole loop.

The Kaggle "Store Sales Forecasting" files go through the app exactly as a vendor's drops
would, on the same local runtime as the demo:

1. ``train.csv``, ``features.csv`` (twice: as weather and as events), ``stores.csv`` and
   ``test.csv`` land in the raw container; the blob trigger conditions each with the shipped
   Walmart mappings (no Walmart code anywhere): shipments, weather, events, the store master
   and a forecast request (the horizon). Rows in = out + rejected is checked for every file.
2. An ADF-style ``POST /api/orchestrations/train`` trains the region's four segments (store
   format × product velocity, each one model across its store × department series) or, with
   ``many_models``, one forecaster per store × department through ``train_many.yml``; the run
   is polled the way the ADF pipeline polls it. Candidates are gated and registered, each
   registration starts an offline model test, and champions score ``test.csv``'s weeks (the
   conditioned horizon: exactly its rows) into the forecasts container.
3. The forecasts are matched to the request's ids into a CSV in Kaggle's submission format
   (``Id`` = ``Store_Dept_Date``, ``Weekly_Sales``; one row per ``test.csv`` row).
4. The dashboard's pages are fetched from the app; a summary gives the timings per stage, the
   peak memory of the whole process tree (runtime, Azurite, jobs), the row accounting and the
   gate summary, and the last line is (one line)::

       walmart rows_in=N rows_out=N rows_rejected=N partitions=N champions=N
       forecast_rows=N submission=PATH

   (rows = ``train.csv``'s; partitions = forecasters trained: one per segment, or one per
   store × department with ``many_models``; champions = those of them now serving as
   champion; forecast_rows = rows the champions forecast for the request).
"""

from __future__ import annotations

import csv
import io
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from local.hosting.demo import (
    DemoStopped,
    http_json,
    management_url,
    poll_like_adf,
    status_url,
    wait_for_versions,
)

if TYPE_CHECKING:
    from adapters.datasets import DatasetVersion
    from composition import Services
    from local.hosting.runtime import LocalRuntime

REGION = "walmart"
BATCH = "walmart"
# (source, file): what lands where in the raw container; features.csv feeds two sources.
DROPS = (
    ("shipments", "train.csv"),
    ("stores", "stores.csv"),
    ("weather", "features.csv"),
    ("events", "features.csv"),
    ("horizon", "test.csv"),
)
FILES = ("train.csv", "features.csv", "stores.csv", "test.csv")
# Settings of the run: Walmart's target is weekly sales in USD, so MAPE counts weeks of at
# least $100 (as the forecast benchmark does); a many-models job takes longer than the
# local runtime's default job deadline.
OVERRIDES = {"MLOPS_MAPE_MIN_ACTUAL": "100", "MLOPS_JOB_TIMEOUT_MINUTES": "360"}
SUBMISSION_HEADER = ("Id", "Weekly_Sales")


class WalmartDataMissing(Exception):
    """The folder given with ``--data`` does not hold the Walmart files."""


def check_data(folder: Path) -> None:
    missing = [name for name in FILES if not (folder / name).is_file()]
    if missing:
        raise WalmartDataMissing(
            f"{folder} does not hold the Walmart files (missing {', '.join(missing)}); "
            "they are read from ../shared/data/walmart (see its SOURCES.md)"
        )


def _say(text: str) -> None:
    print(text, flush=True)


@dataclass
class Accounting:
    """Rows in, out and rejected of one conditioned file."""

    source: str
    file: str
    status: str
    rows_in: int
    rows_out: int
    rows_rejected: int
    records_out: int | None = None

    @property
    def balanced(self) -> bool:
        return self.status == "conditioned" and self.rows_in == self.rows_out + self.rows_rejected


@dataclass
class WalmartResult:
    """What the run did, for the summary, the last line and the tests."""

    many_models: bool
    accounting: list[Accounting] = field(default_factory=list)
    stages: dict[str, float] = field(default_factory=dict)
    train: dict[str, Any] = field(default_factory=dict)
    model_tests: dict[str, str] = field(default_factory=dict)
    partitions: int = 0
    champions: int = 0
    forecast_rows: int = 0
    requested_rows: int = 0
    unanswered: int = 0
    submission: Path | None = None
    dashboard: dict[str, str] = field(default_factory=dict)
    jobs: list[str] = field(default_factory=list)
    peak_rss_mb: float = 0.0
    problems: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    @property
    def shipments(self) -> Accounting | None:
        return next((a for a in self.accounting if a.source == "shipments"), None)

    def last_line(self) -> str:
        ship = self.shipments
        rows = (ship.rows_in, ship.rows_out, ship.rows_rejected) if ship else (0, 0, 0)
        return (
            f"walmart rows_in={rows[0]} rows_out={rows[1]} rows_rejected={rows[2]} "
            f"partitions={self.partitions} champions={self.champions} "
            f"forecast_rows={self.forecast_rows} submission={self.submission or '-'}"
        )


class _Clock:
    """Wall time per stage, in the order the stages ran."""

    def __init__(self, result: WalmartResult) -> None:
        self.result = result
        self.started = time.monotonic()
        self._mark = self.started

    def lap(self, stage: str, at: float | None = None) -> None:
        """``stage`` ran from the previous lap until ``at`` (default: now)."""
        now = time.monotonic() if at is None else at
        self.result.stages[stage] = round(now - self._mark, 1)
        self._mark = now

    def total(self) -> None:
        self.result.stages["total"] = round(time.monotonic() - self.started, 1)


def run(
    runtime: LocalRuntime, stop: threading.Event, data: Path, *, many_models: bool = False
) -> WalmartResult:
    """Run the Walmart loop against a started runtime; prints as it goes and returns what it
    did, also kept as ``walmart/summary.json`` in the state folder. ``problems`` lists what
    went wrong with the loop (empty when every check held); ``notes`` outcomes worth a look,
    such as segments the gate did not promote."""
    from composition import get_services
    from local.processes import TreeRss

    result = WalmartResult(many_models=many_models)
    with TreeRss(interval=0.5) as memory:
        try:
            _run(runtime, stop, get_services(), data, result)
        except DemoStopped:
            result.problems.append("interrupted")
            _say("Walmart run interrupted.")
        except TimeoutError as exc:
            result.problems.append(str(exc))
            _say(f"Walmart run stopped: {exc}")
    result.peak_rss_mb = memory.peak_mb
    from dataclasses import asdict

    _keep(runtime, "summary.json", {**asdict(result), "last_line": result.last_line()})
    return result


def _run(
    runtime: LocalRuntime, stop: threading.Event, services: Services, data: Path,
    result: WalmartResult,
) -> None:  # fmt: skip
    clock = _Clock(result)
    versions = _conditioning(services, stop, data, result, clock)
    if result.problems:
        return
    output = _training(runtime, stop, versions, result, clock)
    if result.problems:
        return
    _model_tests(runtime, stop, output, result)
    clock.lap("model tests")
    _submission(runtime, services, versions["horizon"], output, result)
    clock.lap("submission")
    _say("\n== 5. The dashboard")
    result.dashboard = fetch_dashboard(runtime)
    for page, state in result.dashboard.items():
        _say(f"  {page:<11} {state}")
    result.jobs = job_lines(services)
    clock.lap("dashboard")
    clock.total()


def _conditioning(
    services: Services, stop: threading.Event, data: Path, result: WalmartResult, clock: _Clock
) -> dict[str, DatasetVersion]:
    _say(f"\n== 1. The Walmart files land in the raw container ({data})")
    names = upload(services, data)
    for source, blob in names.items():
        _say(f"  uploaded {services.settings.raw_container}/{blob} ({source})")
    clock.lap("upload")
    _say("  conditioning (blob trigger):")
    versions = wait_for_versions(services, names, stop)
    result.accounting = [_accounting(source, names[source], v) for source, v in versions.items()]
    for a in result.accounting:
        kept = f" ({a.records_out:,} records)" if a.records_out not in (None, a.rows_out) else ""
        check = "rows in = out + rejected" if a.balanced else "ROWS DO NOT ADD UP"
        _say(
            f"  {a.file:<13} -> {a.source:<10} {a.status:<12} in {a.rows_in:>8,}  "
            f"out {a.rows_out:>8,}{kept}  rejected {a.rows_rejected:>4,}  {check}"
        )
        if not a.balanced:
            result.problems.append(f"{a.file} as {a.source}: {a.status}, rows do not add up")
    clock.lap("conditioning")
    return versions


def _training(
    runtime: LocalRuntime, stop: threading.Event, versions: Mapping[str, DatasetVersion],
    result: WalmartResult, clock: _Clock,
) -> dict[str, Any]:  # fmt: skip
    assert runtime.host is not None
    host, key = runtime.host, runtime.host.keys.default_function_key
    week = str(versions["shipments"].period_end)[:10]
    horizon = versions["horizon"]
    scoring_date = str(horizon.period_start)[:10]
    result.requested_rows = horizon.rows_out
    kind = "one model per store x department" if result.many_models else "one model per segment"
    _say(f"\n== 2. ADF starts training of region '{REGION}' ({kind})")
    body: dict[str, Any] = {"regions": [REGION], "week": week, "scoring_date": scoring_date}
    if result.many_models:
        body["many_models"] = True
    url = f"{host.base_url}/api/orchestrations/train?code={key}"
    code, started = http_json(url, body, "POST")
    _say(f"  POST /api/orchestrations/train -> {code}, instance {started.get('id')}")
    _say(f"  week {week}; scoring the request from {scoring_date} ({horizon.rows_out:,} rows)")
    if code not in (200, 202):
        result.problems.append(f"the train request was refused: {code} {started}")
        return {}
    stages = _StageTimes()
    status = status_url(host, key, started["id"])
    train = poll_like_adf(status, stop, "train", timeout=3600, on_status=stages.see)
    result.train = train
    stages.record(clock)
    _keep(runtime, "train.json", train)
    output = train.get("output") if isinstance(train.get("output"), dict) else {}
    if train.get("runtimeStatus") != "Completed" or not output:
        result.problems.append(f"train ended {train.get('runtimeStatus')}: {train.get('output')}")
        return {}
    _gate_summary(output.get("segments") or {}, result)
    return dict(output)


def _model_tests(
    runtime: LocalRuntime, stop: threading.Event, output: Mapping[str, Any], result: WalmartResult
) -> None:
    _say("\n== 3. Offline model tests started by ModelRegistered events")
    for segment, seg in sorted((output.get("segments") or {}).items()):
        if not seg.get("model_version"):
            continue
        instance = f"model_test-{seg['model_name']}-{seg['model_version']}"
        test = poll_like_adf(management_url(runtime, instance), stop, instance)
        verdict = (test.get("output") or {}).get("verdict") or {}
        result.model_tests[segment] = (
            ("passed" if verdict["passed"] else "failed") if "passed" in verdict
            else str(test.get("runtimeStatus"))
        )  # fmt: skip


def _submission(
    runtime: LocalRuntime, services: Services, horizon: DatasetVersion,
    output: Mapping[str, Any], result: WalmartResult,
) -> None:  # fmt: skip
    _say("\n== 4. Forecasts and the submission")
    score = output.get("score") or {}
    if score.get("status") == "failed":
        result.problems.append(f"scoring failed: {score.get('error')}")
    scored = score.get("segments") or {}
    blobs: list[str] = []
    for segment, s in sorted(scored.items()):
        forecasts = s.get("forecasts") or {}
        result.forecast_rows += int(forecasts.get("rows") or 0)
        if forecasts.get("blob"):
            blobs.append(str(forecasts["blob"]))
        _say(f"  {segment:<22} {s.get('status', '-'):<8} {forecasts.get('blob', '-')}")
    target = runtime.state_dir / "walmart" / "submission.csv"
    written, unanswered = write_submission(services, horizon, blobs, target)
    result.submission, result.unanswered = target, unanswered
    _say(f"  submission {target}: {written:,} rows ({unanswered:,} without a forecast: 0)")
    if written != horizon.rows_out:
        result.problems.append(f"the submission has {written} rows for {horizon.rows_out}")
    if result.forecast_rows != result.requested_rows:
        # A segment the gate did not promote has no champion to forecast with: an outcome
        # of the run, reported, not a failure of the loop.
        result.notes.append(
            f"{result.forecast_rows:,} forecast rows for {result.requested_rows:,} requested: "
            "a segment without a champion is not scored"
        )


def _keep(runtime: LocalRuntime, name: str, value: Any) -> None:
    """Keep a run's full record next to the submission (the summary shows only counts)."""
    import json

    folder = runtime.state_dir / "walmart"
    folder.mkdir(parents=True, exist_ok=True)
    (folder / name).write_text(json.dumps(value, indent=1, default=str), encoding="utf-8")


def upload(services: Services, data: Path) -> dict[str, str]:
    """Put every file where its source's drops go; returns source → blob name."""
    lake, raw = services.data_lake, services.settings.raw_container
    lake.ensure_container(raw)
    names: dict[str, str] = {}
    for source, file in DROPS:
        names[source] = f"{source}/{BATCH}/{file}"
        with (data / file).open("rb") as handle:
            lake.write(raw, names[source], handle, content_type="text/csv")
    return names


def _accounting(source: str, blob: str, version: DatasetVersion) -> Accounting:
    records = None
    if version.rows_out and source == "events":
        records = _records_out(version)
    return Accounting(
        source=source, file=blob.rsplit("/", 1)[-1], status=version.status,
        rows_in=version.rows_in, rows_out=version.rows_out, rows_rejected=version.rows_rejected,
        records_out=records,
    )  # fmt: skip


def _records_out(version: DatasetVersion) -> int | None:
    """Records written (an ``emit`` mapping writes several per row), from the manifest."""
    import json

    from composition import get_services

    container, _, name = version.manifest.partition("/")
    try:
        manifest = json.loads(get_services().data_lake.read(container, name))
    except Exception:  # noqa: BLE001 - only the summary line loses a figure
        return None
    value = manifest.get("records_out")
    return int(value) if isinstance(value, int) else None


class _StageTimes:
    """When the train run's custom status moved to each stage (training, scoring, done)."""

    def __init__(self) -> None:
        self.seen: dict[str, float] = {}

    def see(self, status: Mapping[str, Any]) -> None:
        custom = status.get("customStatus")
        stage = custom.get("stage") if isinstance(custom, dict) else None
        if isinstance(stage, str) and stage not in self.seen:
            self.seen[stage] = time.monotonic()

    def record(self, clock: _Clock) -> None:
        """Lap training (inputs check, jobs, gate, registration) until the status said
        scoring, then scoring until now."""
        scoring = self.seen.get("scoring")
        clock.lap("training, gate, register", at=scoring)
        if scoring is not None:
            clock.lap("scoring")


def _gate_summary(segments: Mapping[str, Any], result: WalmartResult) -> None:
    _say("\n  gate summary (MAPE counts weeks of at least $100)")
    _say(
        f"  {'segment':<22} {'decision':<10} {'MAPE':>6} {'base':>6} {'naive':>6}  "
        f"{'partitions passed/total':<24} model"
    )
    for segment, seg in sorted(segments.items()):
        metrics = seg.get("metrics") or {}
        parts = seg.get("partitions") or {}
        total = int(parts.get("total") or 0) if parts else 1
        passed = f"{parts.get('passed', 0)}/{total}" if parts else "-"
        result.partitions += total if seg.get("status") == "completed" else 0
        if seg.get("decision") == "champion":
            result.champions += total
        _say(
            f"  {segment:<22} {seg.get('decision', seg.get('status', '-')):<10} "
            f"{_num((metrics.get('candidate') or {}).get('mape')):>6} "
            f"{_num((metrics.get('baseline') or {}).get('mape')):>6} "
            f"{_num((metrics.get('seasonal_naive') or {}).get('mape')):>6}  {passed:<24} "
            f"{seg.get('model_name', '-')}:{seg.get('model_version', '-')}"
            + (f"  {str(seg.get('error'))[:80]}" if seg.get("error") else "")
        )
        for worst in (parts.get("worst") or [])[:3]:
            why = "; ".join(worst.get("reasons", []))
            _say(f"    worst partition {worst.get('partition')}: {why}")


def _num(value: Any) -> str:
    return f"{value:.3f}" if isinstance(value, int | float) else "-"


def write_submission(
    services: Services, horizon: DatasetVersion, forecast_blobs: list[str], target: Path
) -> tuple[int, int]:
    """Kaggle's submission CSV: one row per requested row, ``Id`` its request id and
    ``Weekly_Sales`` the champion's forecast for its store, department and week (0 for a row
    no champion forecast). Returns (rows written, rows without a forecast)."""
    lake = services.data_lake
    forecasts: dict[tuple[str, str, str], str] = {}
    for blob in forecast_blobs:
        container, _, name = blob.partition("/")
        text = lake.read(container, name).decode("utf-8")
        for row in csv.DictReader(io.StringIO(text)):
            forecasts[(row["store_id"], row["product_id"], row["week_start"][:10])] = row[
                "forecast"
            ]
    target.parent.mkdir(parents=True, exist_ok=True)
    written = unanswered = 0
    with target.open("w", encoding="utf-8", newline="") as out:
        writer = csv.writer(out, lineterminator="\n")
        writer.writerow(SUBMISSION_HEADER)
        for row in _horizon_rows(services, horizon):
            value = forecasts.get((row["store_id"], row["product_id"], row["week_start"][:10]))
            if value is None:
                unanswered += 1
            writer.writerow((row["request_id"], value if value is not None else "0"))
            written += 1
    return written, unanswered


def _horizon_rows(services: Services, horizon: DatasetVersion) -> Any:
    """The conditioned request's rows, part by part, in their order."""
    lake = services.data_lake
    for blob in horizon.files:
        container, _, name = blob.partition("/")
        if "/part-" not in name or not name.endswith(".csv"):
            continue
        with lake.open(container, name) as handle:
            yield from csv.DictReader(io.TextIOWrapper(handle, encoding="utf-8", newline=""))


def job_lines(services: Services) -> list[str]:
    """The Azure ML jobs of the run as the dashboard recorded them: each one's wall time and
    its steps' (the queue a job waited in on the local two-job cluster is not counted)."""
    from dashboard.summary import load_dashboard

    if services.summary is None:
        return []
    lines = []
    jobs = sorted(load_dashboard(services.summary).jobs, key=lambda j: (j.pipeline, j.name))
    for job in jobs:
        starts = [s.started_at for s in job.steps if s.started_at]
        ends = [s.ended_at for s in job.steps if s.ended_at]
        wall = (max(ends) - min(starts)).total_seconds() if starts and ends else 0.0
        steps = ", ".join(
            f"{s.name} {s.duration_seconds:.0f}"
            for s in job.steps
            if s.duration_seconds is not None
        )
        lines.append(f"{job.pipeline:<10} {job.name:<40} {job.status:<9} {wall:>6.0f} s  ({steps})")
    return lines


def fetch_dashboard(runtime: LocalRuntime) -> dict[str, str]:
    """Each dashboard page as the app serves it: status and size, or the error."""
    import urllib.error
    import urllib.request

    from dashboard.pages import PAGES

    assert runtime.host is not None
    base = runtime.host.base_url
    key = runtime.host.keys.default_function_key
    pages: dict[str, str] = {}
    for page in PAGES:
        url = f"{base}/api/dashboard/{page}.html?code={key}"
        try:
            with urllib.request.urlopen(url, timeout=60) as response:  # noqa: S310 - loopback
                body = response.read()
                pages[page] = f"{response.status}, {len(body) / 1024:.0f} KB"
        except (urllib.error.URLError, OSError) as exc:
            pages[page] = f"error: {exc}"
    pages["url"] = f"{base}/api/dashboard/?code={key}"
    return pages


def print_summary(result: WalmartResult, say: Callable[[str], None] = _say) -> None:
    """The closing summary; its last line is ``WalmartResult.last_line``."""
    say("\n== Summary")
    say("  stage timings (s): " + ", ".join(f"{k} {v}" for k, v in result.stages.items()))
    if result.jobs:
        say("  Azure ML jobs (wall s, steps s):")
        for line in result.jobs:
            say(f"    {line}")
    say(f"  peak memory of the process tree (runtime, Azurite, jobs): {result.peak_rss_mb:,.0f} MB")
    for a in result.accounting:
        say(
            f"  {a.file} as {a.source}: in {a.rows_in:,} = out {a.rows_out:,} + rejected "
            f"{a.rows_rejected:,}" + ("" if a.balanced else "  (DOES NOT HOLD)")
        )
    if result.model_tests:
        tests = ", ".join(f"{s} {v}" for s, v in sorted(result.model_tests.items()))
        say(f"  model tests: {tests}")
    say(
        f"  forecast rows {result.forecast_rows:,} of {result.requested_rows:,} requested; "
        f"submission rows without a forecast: {result.unanswered:,}"
    )
    if result.dashboard.get("url"):
        say(f"  dashboard: {result.dashboard['url']}")
    for note in result.notes:
        say(f"  note: {note}")
    for problem in result.problems:
        say(f"  PROBLEM: {problem}")
    say(result.last_line())
