"""Jobs of the local jobs adapter are forked from one warm launcher, each a process of its own.

Real parts: the launcher process (``python -m local.aml launch``), forked job processes running
the contract pipeline, their records and logs. What is checked is what the cold start
guaranteed too — one process and session per job, output in the job's log, the job's pid in
its record, jobs outliving the adapter — plus that the start-up is paid once, not per job.
"""

from __future__ import annotations

import os
import time
from pathlib import Path

import pytest

from local.aml.jobs import LocalPipelineJobs
from local.aml.launcher import LaunchedJob
from tests.integration.test_jobs_contract import CONTRACT, SLOW, wait_terminal

pytestmark = pytest.mark.integration


def _parent(pid: int) -> int:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return int(fields[1])


def test_jobs_are_forked_from_one_launcher_each_in_a_session_of_its_own(tmp_path: Path) -> None:
    jobs = LocalPipelineJobs(tmp_path / "aml", tracking_uri=None, step_timeout=240)
    try:
        names = [jobs.submit(CONTRACT, {"value": v}, experiment_name="launch") for v in (0.25, 0.5)]
        children = dict(jobs._children)
        assert children and all(isinstance(c, LaunchedJob) for c in children.values())
        launcher = jobs._launcher._proc
        assert launcher is not None and launcher.poll() is None
        for child in children.values():
            assert child.poll() is None  # still running: inspect it
            assert _parent(child.pid) == launcher.pid
            assert os.getsid(child.pid) == child.pid  # its own session: cancel kills its group
        for name in names:
            assert wait_terminal(jobs, name, []).status == "Completed"
            record = jobs._executor.status(name)
            assert record.runner_pid == children[name].pid
            children[name].wait(timeout=60)  # it reports after the record says Completed
            log = (tmp_path / "aml" / "jobs" / name / "executor.log").read_text()
            assert "output metrics:" in log  # the job's own report, in its log
    finally:
        jobs.close(timeout=60)
    assert launcher.poll() is not None  # closing the adapter lets the launcher go


def test_a_job_outlives_the_adapter_and_a_dead_launcher_falls_back_to_a_cold_start(
    tmp_path: Path,
) -> None:
    jobs = LocalPipelineJobs(tmp_path / "aml", tracking_uri=None, step_timeout=240)
    slow = jobs.submit(SLOW, {}, experiment_name="launch")
    pid = jobs._children[slow].pid
    launcher = jobs._launcher._proc
    assert launcher is not None
    launcher.kill()
    launcher.wait(timeout=10)
    time.sleep(0.2)
    assert jobs._children[slow].poll() is None  # the job did not die with its launcher
    quick = jobs.submit(CONTRACT, {"value": 1.0}, experiment_name="launch")
    started = jobs._children.get(quick)
    if started is not None:  # both slots may be busy; then it waits its turn
        assert not isinstance(started, LaunchedJob)  # cold: the launcher is not reused
    jobs._executor.cancel(slow)
    assert wait_terminal(jobs, slow, []).status == "Canceled"
    assert wait_terminal(jobs, quick, []).status == "Completed"
    jobs.close(timeout=60)
    assert jobs._executor.status(slow).runner_pid == pid
