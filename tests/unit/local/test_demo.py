"""The demo's progress line reads the train run's custom status as the ADF poll sees it."""

from __future__ import annotations

from local.hosting.demo import _progress
from orchestrators.progress import TrainingProgress


def test_progress_line_from_a_train_run_s_custom_status() -> None:
    progress = TrainingProgress(segments=12, batches=4)
    progress.record("r01-large-fast", {"status": "completed", "decision": "champion"})
    progress.record("r01-large-slow", {"status": "failed", "error": "no rows"})
    assert _progress(progress.status("training")) == "2/12 finished: champion=1, failed=1"
    assert _progress({"stage": "checking inputs"}) == ""
    assert _progress({"segments": {"r01": "running"}}) == ""
