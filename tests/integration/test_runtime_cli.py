"""`python -m local start`: everything comes up on loopback and Ctrl-C stops all of it."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import urllib.request
import uuid
from pathlib import Path

import pytest

from local.hosting.azurite import Azurite

pytestmark = pytest.mark.integration

REPO = Path(__file__).resolve().parents[2]


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    # A zombie still answers kill(0); read its state.
    try:
        state = Path(f"/proc/{pid}/stat").read_text().split()[2]
    except FileNotFoundError:
        return False
    return state != "Z"


def test_start_serves_the_app_and_sigint_stops_everything(tmp_path: Path) -> None:
    proc = subprocess.Popen(
        [sys.executable, "-m", "local", "start", "--json", "--port", "0", "--in-memory",
         "--state-dir", str(tmp_path)],
        cwd=REPO,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        stdin=subprocess.DEVNULL,
        text=True,
    )  # fmt: skip
    try:
        assert proc.stdout is not None
        info = None
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            line = proc.stdout.readline()
            if not line:
                break
            if line.startswith("{"):
                info = json.loads(line)
                break
        assert info is not None, "the runtime never reported ready"
        assert info["base_url"].startswith("http://127.0.0.1:")
        names = {f["name"] for f in info["functions"]}
        assert "on_health_get" in names
        with urllib.request.urlopen(f"{info['base_url']}/api/health", timeout=10) as resp:
            assert json.loads(resp.read()) == {"status": "ok"}
        azurite_pid = info["azurite"]["pid"]
        assert _alive(azurite_pid)

        proc.send_signal(signal.SIGINT)
        assert proc.wait(timeout=30) == 0
        deadline = time.monotonic() + 10
        while _alive(azurite_pid) and time.monotonic() < deadline:
            time.sleep(0.1)
        assert not _alive(azurite_pid), "Azurite outlived the runtime"
        assert (tmp_path / "host-keys.json").exists()
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


def test_a_bad_setting_stops_start_up_with_one_message(tmp_path: Path) -> None:
    env = {**os.environ, "MLOPS_TASK_HUB": "9", "MLOPS_RAW_CONTAINER": "NO"}
    proc = subprocess.run(
        [sys.executable, "-m", "local", "start", "--port", "0", "--in-memory",
         "--state-dir", str(tmp_path)],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )  # fmt: skip
    assert proc.returncode == 2
    assert "2 setting problem(s)" in proc.stderr
    assert "MLOPS_TASK_HUB" in proc.stderr and "MLOPS_RAW_CONTAINER" in proc.stderr
    assert "Traceback" not in proc.stderr


def test_serve_runs_the_app_with_exactly_the_settings_it_is_given(
    tmp_path: Path, azurite: Azurite
) -> None:
    from local.hosting.runtime import isolated_environment
    from tests.rehearsal.app import AppProcess, call

    raw = f"drops{uuid.uuid4().hex[:8]}"
    settings = isolated_environment(tmp_path, azurite.connection_string,
                                    {"MLOPS_RAW_CONTAINER": raw})  # fmt: skip
    # The test process's own MLOPS_* variables never reach the served app.
    app = AppProcess(settings, {"MLOPS_RAW_CONTAINER": "not-this"}, tmp_path / "app")
    app.start()
    try:
        status, body, _ = call(f"{app.base_url}/api/health")
        assert (status, body) == (200, {"status": "ok"})
        assert app.keys is not None
        status, listing, _ = call(
            f"{app.base_url}/admin/functions", headers={"x-functions-key": app.keys.master}
        )
        (blob,) = [f for f in listing["functions"] if f["trigger"] == "blobTrigger"]
        assert f"{raw}/" in blob["description"]
    finally:
        app.stop()


def test_serve_refuses_bad_settings_with_one_message(tmp_path: Path) -> None:
    settings = tmp_path / "settings.json"
    settings.write_text(json.dumps({"MLOPS_TASK_HUB": "9", "MLOPS_ENVIRONMENT": "azure"}))
    env = {k: v for k, v in os.environ.items() if not k.startswith("MLOPS_")}
    proc = subprocess.run(
        [sys.executable, "-m", "local", "serve", "--settings", str(settings), "--port", "0",
         "--state-dir", str(tmp_path)],
        cwd=REPO, env=env, capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip
    assert proc.returncode == 2
    assert "cannot serve the app" in proc.stderr
    assert "MLOPS_TASK_HUB" in proc.stderr and "AzureWebJobsStorage" in proc.stderr
    assert "Traceback" not in proc.stderr
