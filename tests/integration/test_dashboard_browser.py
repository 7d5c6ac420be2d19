"""The dashboard function in a real headless Chromium, served by the local runtime.

The runtime runs as ``python -m local start`` (Azurite, the local Functions host, the whole
app); the browser opens ``/api/dashboard`` with the function key and follows the pages' own
links. First with nothing recorded: every page must say so. Then with demo-like state made
with real parts (an MLflow sqlite registry with model versions, job records written by the
local executor's ``JobStore``, dataset versions, manifests and forecasts in the runtime's
Azurite), folded into the summary by ``dashboard.summary.backfill`` as ``python -m dashboard
backfill`` does. Chromium is driven over the DevTools protocol: each page must load without
console errors, every chart must be laid out, and a screenshot must show drawn charts (decoded
with the standard library and checked for the series' colours in the chart's area).
"""

from __future__ import annotations

import asyncio
import base64
import json
import os
import re
import shutil
import signal
import struct
import subprocess
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.request
import zlib
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from urllib.parse import quote

import aiohttp
import pytest

from adapters.datalake import AzureBlobDataLake, DataLake
from adapters.datasets import BlobDatasetRegistry, DatasetVersion
from adapters.settings import Connection
from adapters.summary import DataLakeSummaryStore
from dashboard import PAGES, collect
from dashboard.collect import Sources, mlflow_model_names
from dashboard.model import MEASURES
from dashboard.summary import backfill
from local.aml.registry import MLflowModelRegistry
from local.aml.store import JobRecord, JobStore, StepRecord
from local.aml.tracking import sqlite_tracking_uri
from local.processes import stop_process

pytestmark = pytest.mark.integration
CHROMIUM_FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--hide-scrollbars",
    "--remote-debugging-address=127.0.0.1",
    "--remote-debugging-port=0",
]
VIEWPORT = (1280, 1800)
CANDIDATE_BLUE = (0x25, 0x63, 0xEB)
STALE_RED = (0xDC, 0x26, 0x26)
FRESH_GREEN = (0x16, 0xA3, 0x4A)


def chromium_path() -> str:
    found = shutil.which("chromium") or shutil.which("chromium-browser")
    if found:
        return found
    message = "Chromium is not installed (Debian: apt-get update && apt-get install -y chromium)"
    if os.environ.get("CI", "").lower() == "true":
        pytest.fail(message)
    pytest.skip(message)


# ---------------------------------------------------------------- state


def _seed_registry(uri: str, root: Path, now: datetime) -> None:
    from mlflow.tracking import MlflowClient

    client = MlflowClient(tracking_uri=uri, registry_uri=uri)
    source = root / "model"
    source.mkdir()
    registry = MLflowModelRegistry(uri)
    plan = {
        "north/large/fast": [(100, 0.34, 0.61), (75, 0.27, 0.60), (40, 0.22, 0.63)],
        "south/small/slow": [(30, 0.49, 0.52), (12, 0.41, 0.50)],
    }
    for segment, versions in plan.items():
        name = "forecast-" + segment.replace("/", "-")
        client.create_registered_model(name)
        previous: float | None = None
        for days, mape, baseline in versions:
            tags = {
                "segment": segment,
                "trained_at": (now - timedelta(days=days)).isoformat(),
                "gate": "pass" if mape <= 0.45 else "fail",
                "ensemble_mape": str(mape),
                "baseline_mape": str(baseline),
                "ensemble_rmse_all": str(round(mape * 20, 3)),
                "baseline_rmse_all": str(round(baseline * 20, 3)),
                "ensemble_rmse_zero": str(round(mape * 3, 3)),
                "baseline_rmse_zero": str(round(baseline * 3, 3)),
            }
            if previous is not None:
                tags["champion_mape"] = str(previous)
            version = client.create_model_version(name, source.as_uri(), tags=tags)
            previous = mape
        # the first segment's champion is its first version (old: stale), the second's latest
        champion = "1" if segment.startswith("north") else str(version.version)
        registry.set_alias(name, "champion", champion)


def _seed_jobs(root: Path, now: datetime) -> None:
    store = JobStore(root)
    for i, failed in enumerate((False, False, True)):
        start = now - timedelta(hours=10 - i)
        steps: dict[str, StepRecord] = {}
        t = start
        for name, seconds in (
            ("prep", 5),
            ("train", 50 + 10 * i),
            ("evaluate", 8),
            ("register", 4),
        ):
            status = "Failed" if failed and name == "train" else "Completed"
            steps[name] = StepRecord(
                name=name,
                status=status,
                started_at=t.isoformat(),
                ended_at=(t + timedelta(seconds=seconds)).isoformat(),
            )
            t += timedelta(seconds=seconds)
            if status == "Failed":
                break
        store.save(
            JobRecord(
                name=f"train_{i}",
                display_name="forecast-train",
                experiment_name="forecast-train",
                pipeline_path="pipelines/train.yml",
                status="Failed" if failed else "Completed",
                steps=steps,
                created_at=start.isoformat(),
                failed_step="train" if failed else "",
                error="train exited with code 1: out of memory" if failed else "",
            )
        )


def _seed_lake(lake: DataLake, now: datetime) -> None:
    for container in ("conditioned", "quarantine", "forecasts"):
        lake.ensure_container(container)
    registry = BlobDatasetRegistry(lake, "conditioned")
    weeks = [
        now.date() - timedelta(days=now.weekday()) - timedelta(weeks=20 - i) for i in range(24)
    ]
    history = ["week_start,store_id,product_id,quantity,quantity_unit"]
    for i, week in enumerate(weeks[:20]):
        history += [f"{week},1,A,{100 + 10 * (i % 4)},units", f"{week},2,B,{40 + i},units"]
    rejects = {
        "shipments": {"bad_date": 14, "negative_quantity": 6},
        "weather": {"out_of_range": 9},
        "events": {"unknown_store": 3, "bad_date": 2},
    }
    for source, counts in rejects.items():
        version = f"{source}-v1"
        manifest = f"{source}/{version}/manifest.json"
        lake.write("conditioned", manifest, json.dumps({"reject_counts": counts}).encode())
        files: tuple[str, ...] = ()
        if source == "shipments":
            part = f"{source}/{version}/part-00000.csv"
            lake.write("conditioned", part, ("\n".join(history) + "\n").encode())
            files = (f"conditioned/{part}",)
        registry.register(
            DatasetVersion(
                source=source,
                dataset_version=version,
                status="conditioned",
                input_name=f"{source}/2024/{source}.csv",
                input_etag="etag",
                input_sha256="sha",
                manifest=f"conditioned/{manifest}",
                files=files,
                rows_in=1000,
                rows_out=1000 - sum(counts.values()),
                rows_rejected=sum(counts.values()),
                registered_at=now.isoformat(),
            )
        )
    scoring_date = weeks[18].isoformat()
    for segment, stores in (("north-large-fast", ("1",)), ("south-small-slow", ("2",))):
        rows = ["store_id,product_id,week_start,segment,forecast,model_name,model_version,stale"]
        for i, week in enumerate(weeks[18:]):
            for store in stores:
                product = "A" if store == "1" else "B"
                value = 112 + 5 * i if store == "1" else 58 + i
                stale = "True" if segment.startswith("north") else "False"
                rows.append(
                    f"{store},{product},{week},{segment},{value},forecast-{segment},1,{stale}"
                )
        lake.write("forecasts", f"{scoring_date}/{segment}.csv", ("\n".join(rows) + "\n").encode())


REPO = Path(__file__).resolve().parents[2]


@dataclass
class Served:
    base_url: str
    key: str
    out: Path
    lake: DataLake

    def url(self, path: str) -> str:
        return f"{self.base_url}{path}?code={quote(self.key, safe='')}"


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Served]:
    """``python -m local start`` on a free port, with in-memory Azurite; stopped by PID."""
    # pytest keeps this directory after the run: the screenshots are saved in it to look at
    root = tmp_path_factory.mktemp("dashboard")
    proc = subprocess.Popen(
        [sys.executable, "-m", "local", "start", "--json", "--port", "0", "--in-memory",
         "--state-dir", str(root / "state")],
        cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
        text=True,
    )  # fmt: skip
    try:
        assert proc.stdout is not None
        info: dict[str, Any] | None = None
        deadline = time.monotonic() + 120
        while info is None and time.monotonic() < deadline:
            line = proc.stdout.readline()
            if not line:
                break
            if line.startswith("{"):
                info = json.loads(line)
        assert info is not None, "the local runtime never reported ready"
        # keep draining the runtime's log so it never blocks on a full pipe
        threading.Thread(target=proc.stdout.read, daemon=True).start()
        assert "on_dashboard_get" in {f["name"] for f in info["functions"]}
        assert info["dashboard"].startswith(f"{info['base_url']}/api/dashboard/?code=")
        # The link carries the dashboard's own key, which starts nothing.
        assert info["dashboard_key"] != info["function_key"]
        start = urllib.request.Request(
            f"{info['base_url']}/api/orchestrations/train?code={info['dashboard_key']}",
            data=b"{}",
            method="POST",
            headers={"Content-Type": "application/json"},
        )
        with pytest.raises(urllib.error.HTTPError) as refused:
            urllib.request.urlopen(start, timeout=30)
        assert refused.value.code == 401
        lake = AzureBlobDataLake.from_connection(
            Connection(name="lake", connection_string=info["azurite"]["connection_string"])
        )
        yield Served(info["base_url"], info["dashboard_key"], root, lake)
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGINT)
            try:
                proc.wait(timeout=60)
            except subprocess.TimeoutExpired:
                stop_process(proc)


def _record_demo_state(served: Served) -> None:
    """Demo-like state on real parts, folded into the runtime's summary (the backfill)."""
    root, now = served.out, datetime.now(UTC).replace(microsecond=0)
    uri = sqlite_tracking_uri(root / "mlflow")
    _seed_registry(uri, root, now)
    _seed_jobs(root / "aml", now)
    _seed_lake(served.lake, now)
    sources = Sources(
        lake=served.lake,
        registry=MLflowModelRegistry(uri),
        model_names=lambda: mlflow_model_names(uri),
        jobs_root=root / "aml",
    )
    data = collect(sources)
    assert data.problems == ()
    backfill(DataLakeSummaryStore(served.lake, "ops"), data)


# ---------------------------------------------------------------- browser


@pytest.fixture(scope="module")
def devtools_url() -> Iterator[str]:
    binary = chromium_path()
    profile = tempfile.mkdtemp(prefix="chromium-profile-")
    proc = subprocess.Popen(
        [binary, *CHROMIUM_FLAGS, f"--user-data-dir={profile}", "about:blank"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
    )
    try:
        assert proc.stderr is not None
        url = ""
        for _ in range(500):
            line = proc.stderr.readline()
            if not line:
                break
            found = re.search(r"DevTools listening on (ws://\S+)", line)
            if found:
                url = found.group(1)
                break
        assert url, "Chromium did not start its DevTools endpoint"
        # keep draining stderr so Chromium never blocks on a full pipe
        drain = threading.Thread(target=proc.stderr.read, daemon=True)
        drain.start()
        yield url
    finally:
        stop_process(proc)
        shutil.rmtree(profile, ignore_errors=True)


class Page:
    """One browser tab over the DevTools protocol: navigate, evaluate, screenshot."""

    def __init__(self, ws: aiohttp.ClientWebSocketResponse, session_id: str) -> None:
        self.ws = ws
        self.session_id = session_id
        self.next_id = 0
        self.events: list[dict[str, Any]] = []

    async def send(self, method: str, params: dict[str, Any] | None = None) -> dict[str, Any]:
        self.next_id += 1
        wanted = self.next_id
        message = {
            "id": wanted,
            "method": method,
            "params": params or {},
            "sessionId": self.session_id,
        }
        await self.ws.send_json(message)
        while True:
            reply = await asyncio.wait_for(self.ws.receive_json(), 30)
            if reply.get("id") == wanted:
                if "error" in reply:
                    raise AssertionError(f"{method}: {reply['error']}")
                return dict(reply.get("result", {}))
            self.events.append(reply)

    async def wait_for(self, method: str, timeout: float = 30) -> dict[str, Any]:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while True:
            for i, event in enumerate(self.events):
                if event.get("method") == method:
                    return self.events.pop(i)
            remaining = deadline - loop.time()
            assert remaining > 0, f"timed out waiting for {method}"
            self.events.append(await asyncio.wait_for(self.ws.receive_json(), remaining))

    def errors(self) -> list[str]:
        out = []
        for e in self.events:
            method, params = e.get("method"), e.get("params", {})
            if method == "Runtime.exceptionThrown":
                out.append(json.dumps(params.get("exceptionDetails", {}))[:300])
            elif method == "Runtime.consoleAPICalled" and params.get("type") in ("error", "assert"):
                out.append(json.dumps(params.get("args", []))[:300])
            elif method == "Log.entryAdded" and params.get("entry", {}).get("level") == "error":
                out.append(str(params["entry"].get("text")) + " " + str(params["entry"].get("url")))
        return out


@dataclass
class Visit:
    title: str
    charts: list[dict[str, Any]]
    errors: list[str]
    png: bytes
    url: str
    text: str


async def _visit_all(ws_url: str, start: str) -> dict[str, Visit]:
    visits: dict[str, Visit] = {}
    async with aiohttp.ClientSession() as http, http.ws_connect(ws_url, max_msg_size=0) as ws:
        await ws.send_json(
            {"id": 1, "method": "Target.createTarget", "params": {"url": "about:blank"}}
        )
        target = ""
        while not target:
            reply = await asyncio.wait_for(ws.receive_json(), 30)
            if reply.get("id") == 1:
                target = reply["result"]["targetId"]
        await ws.send_json(
            {
                "id": 2,
                "method": "Target.attachToTarget",
                "params": {"targetId": target, "flatten": True},
            }
        )
        session = ""
        while not session:
            reply = await asyncio.wait_for(ws.receive_json(), 30)
            if reply.get("id") == 2:
                session = reply["result"]["sessionId"]
        page = Page(ws, session)
        for domain in ("Page", "Runtime", "Log"):
            await page.send(f"{domain}.enable")
        width, height = VIEWPORT
        await page.send(
            "Emulation.setDeviceMetricsOverride",
            {"width": width, "height": height, "deviceScaleFactor": 1, "mobile": False},
        )
        # Open the overview as an operator would (the URL with the key), then follow the
        # pages' own navigation links: they must carry the key on.
        urls = {"index": start}
        for name in PAGES:
            url = urls[name]
            page.events.clear()
            await page.send("Page.navigate", {"url": url})
            await page.wait_for("Page.loadEventFired")
            result = await page.send(
                "Runtime.evaluate",
                {
                    "expression": (
                        "JSON.stringify({title: document.title, url: location.href, "
                        "text: document.body.innerText, "
                        "links: Object.fromEntries([...document.querySelectorAll('nav a')]"
                        ".map(a => [a.textContent, a.href])), charts: "
                        "[...document.querySelectorAll('svg.chart')].map(s => {"
                        "const r = s.getBoundingClientRect();"
                        "return {name: s.dataset.chart, x: r.x, y: r.y, w: r.width, h: r.height,"
                        " marks: s.querySelectorAll('circle,rect,polyline').length}})})"
                    ),
                    "returnByValue": True,
                },
            )
            info = json.loads(result["result"]["value"])
            shot = await page.send("Page.captureScreenshot", {"format": "png"})
            visits[name] = Visit(
                title=info["title"],
                charts=info["charts"],
                errors=page.errors(),
                png=base64.b64decode(shot["data"]),
                url=info["url"],
                text=info["text"],
            )
            if name == "index":
                titles = {"Training": "training", "Monitoring": "monitoring", "Scoring": "scoring"}
                urls.update({titles[t]: href for t, href in info["links"].items() if t in titles})
        await page.send("Target.closeTarget", {"targetId": target})
    return visits


@pytest.fixture(scope="module")
def empty_visits(served: Served, devtools_url: str) -> dict[str, Visit]:
    """The pages before anything was recorded (this fixture runs before ``visits``)."""
    return asyncio.run(_visit_all(devtools_url, served.url("/api/dashboard")))


@pytest.fixture(scope="module")
def visits(served: Served, devtools_url: str, empty_visits: dict[str, Visit]) -> dict[str, Visit]:
    _record_demo_state(served)
    return asyncio.run(_visit_all(devtools_url, served.url("/api/dashboard")))


# ---------------------------------------------------------------- PNG


def decode_png(data: bytes) -> tuple[int, int, list[bytearray]]:
    """(width, height, rows of RGB(A) bytes) of an 8-bit, non-interlaced PNG."""
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    pos, idat = 8, b""
    width = height = channels = 0
    while pos < len(data):
        (length,) = struct.unpack(">I", data[pos : pos + 4])
        kind, body = data[pos + 4 : pos + 8], data[pos + 8 : pos + 8 + length]
        pos += 12 + length
        if kind == b"IHDR":
            width, height, depth, color, _, _, interlace = struct.unpack(">IIBBBBB", body)
            assert depth == 8 and interlace == 0 and color in (2, 6)
            channels = 3 if color == 2 else 4
        elif kind == b"IDAT":
            idat += body
    raw = zlib.decompress(idat)
    stride = width * channels
    rows: list[bytearray] = []
    prev = bytearray(stride)
    for y in range(height):
        start = y * (stride + 1)
        filter_type, line = raw[start], bytearray(raw[start + 1 : start + 1 + stride])
        for i in range(stride):
            left = line[i - channels] if i >= channels else 0
            up = prev[i]
            up_left = prev[i - channels] if i >= channels else 0
            if filter_type == 1:
                line[i] = (line[i] + left) & 0xFF
            elif filter_type == 2:
                line[i] = (line[i] + up) & 0xFF
            elif filter_type == 3:
                line[i] = (line[i] + (left + up) // 2) & 0xFF
            elif filter_type == 4:
                p = left + up - up_left
                pa, pb, pc = abs(p - left), abs(p - up), abs(p - up_left)
                pred = left if pa <= pb and pa <= pc else up if pb <= pc else up_left
                line[i] = (line[i] + pred) & 0xFF
        rows.append(line)
        prev = line
    return width, height, [r if channels == 3 else _rgb(r) for r in rows]


def _rgb(rgba: bytearray) -> bytearray:
    out = bytearray()
    for i in range(0, len(rgba), 4):
        out += rgba[i : i + 3]
    return out


def region_stats(png: bytes, box: dict[str, Any]) -> tuple[float, dict[tuple[int, int, int], int]]:
    """Share of non-white pixels in ``box`` and a count of each (exact) colour."""
    width, height, rows = decode_png(png)
    x0, y0 = max(int(box["x"]), 0), max(int(box["y"]), 0)
    x1, y1 = min(int(box["x"] + box["w"]), width), min(int(box["y"] + box["h"]), height)
    colours: dict[tuple[int, int, int], int] = {}
    ink = total = 0
    for y in range(y0, y1):
        row = rows[y]
        for x in range(x0, x1):
            rgb = (row[3 * x], row[3 * x + 1], row[3 * x + 2])
            colours[rgb] = colours.get(rgb, 0) + 1
            total += 1
            ink += rgb != (255, 255, 255)
    return ink / max(total, 1), colours


def near(colours: dict[tuple[int, int, int], int], target: tuple[int, int, int]) -> int:
    return sum(
        n
        for c, n in colours.items()
        if all(abs(a - b) <= 12 for a, b in zip(c, target, strict=True))
    )


# ---------------------------------------------------------------- tests


def test_with_nothing_recorded_every_page_says_so(
    empty_visits: dict[str, Visit], served: Served
) -> None:
    assert set(empty_visits) == set(PAGES)
    for name, visit in empty_visits.items():
        assert visit.errors == [], (name, visit.errors)
        assert visit.title.startswith("Model health")
        assert "Some data could not be read" not in visit.text
        (served.out / f"empty-{name}.png").write_bytes(visit.png)
    assert "No data recorded yet" in empty_visits["index"].text
    assert "No model versions in the registry yet" in empty_visits["training"].text
    monitoring = empty_visits["monitoring"].text
    assert "no champion models yet" in monitoring and "No conditioning runs recorded" in monitoring
    assert "no pipeline jobs recorded" in monitoring
    assert "No scoring run has written forecasts yet" in empty_visits["scoring"].text


def test_every_page_loads_without_console_errors(visits: dict[str, Visit], served: Served) -> None:
    assert set(visits) == set(PAGES)
    for name, visit in visits.items():
        assert visit.errors == [], (name, visit.errors)
        assert visit.title.startswith("Model health")
        assert "No data recorded yet" not in visit.text
        assert f"code={quote(served.key, safe='')}" in visit.url, "the links carry the key on"
    assert "/api/dashboard?code=" in visits["index"].url
    assert visits["training"].url.startswith(f"{served.base_url}/api/dashboard/training.html?")
    (served.out / "index.png").write_bytes(visits["index"].png)


def test_training_screenshot_shows_the_plotted_metrics(
    visits: dict[str, Visit], served: Served
) -> None:
    visit = visits["training"]
    (served.out / "training.png").write_bytes(visit.png)
    charts = {c["name"]: c for c in visit.charts}
    # Two segments, each with MAPE, WAPE, WMAE, RMSE 0 and RMSE All; a measure a
    # version did not record keeps its place in the grid with an empty message.
    assert set(charts) == {
        f"training-{segment}-{measure}"
        for segment in ("north/large/fast", "south/small/slow")
        for measure in MEASURES
    }
    mape = charts["training-north/large/fast-mape"]
    assert mape["w"] > 300 and mape["h"] > 150
    assert mape["y"] + mape["h"] <= VIEWPORT[1], "the first chart is inside the screenshot"
    assert mape["marks"] >= 3 + 3 + 2  # candidate, baseline and champion points
    ink, colours = region_stats(visit.png, mape)
    assert 0.03 < ink < 0.6, ink
    assert near(colours, CANDIDATE_BLUE) > 40, "the candidate's line and points are drawn"
    assert near(colours, STALE_RED) > 40, "the MAPE bar is drawn"


def test_monitoring_screenshot_shows_stale_and_fresh_models_rejects_and_steps(
    visits: dict[str, Visit], served: Served
) -> None:
    visit = visits["monitoring"]
    (served.out / "monitoring.png").write_bytes(visit.png)
    charts = {c["name"]: c for c in visit.charts}
    assert set(charts) == {"model-age", "rejects", "pipeline-steps"}
    _, colours = region_stats(visit.png, charts["model-age"])
    assert near(colours, STALE_RED) > 200, "north/large/fast's champion is 100 days old"
    assert near(colours, FRESH_GREEN) > 200, "south/small/slow's champion is 12 days old"
    for name in ("rejects", "pipeline-steps"):
        ink, _ = region_stats(visit.png, charts[name])
        assert ink > 0.05, (name, ink)
    _, colours = region_stats(visit.png, charts["pipeline-steps"])
    assert near(colours, STALE_RED) > 100, "the failed step is red"


def test_scoring_screenshot_shows_forecasts_against_actuals(
    visits: dict[str, Visit], served: Served
) -> None:
    visit = visits["scoring"]
    (served.out / "scoring.png").write_bytes(visit.png)
    charts = {c["name"]: c for c in visit.charts}
    assert set(charts) == {"scoring-north-large-fast", "scoring-south-small-slow"}
    for chart in charts.values():
        assert chart["marks"] >= 2 + 6, chart  # two lines, forecast and actual points
        _, colours = region_stats(visit.png, chart)
        assert near(colours, CANDIDATE_BLUE) > 40
        assert near(colours, (0x11, 0x18, 0x27)) > 40  # actuals


def test_unknown_pages_are_404_and_the_key_is_required(served: Served) -> None:
    async def get(url: str) -> tuple[int, str, dict[str, str]]:
        async with aiohttp.ClientSession() as http, http.get(url) as response:
            return response.status, await response.text(), dict(response.headers)

    status, body, _ = asyncio.run(get(served.url("/api/dashboard/secrets.html")))
    assert status == 404 and "no dashboard page 'secrets'" in json.loads(body)["error"]["message"]
    status, _, _ = asyncio.run(get(f"{served.base_url}/api/dashboard/training.html"))
    assert status == 401
    status, _, headers = asyncio.run(get(served.url("/api/dashboard/scoring.html")))
    assert status == 200 and headers["Content-Type"].startswith("text/html")
    assert "default-src 'none'" in headers["Content-Security-Policy"]
