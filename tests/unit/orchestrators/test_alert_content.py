from __future__ import annotations

from datetime import UTC, datetime, timedelta

from orchestrators.alert_content import (
    LOG_LINES,
    NEXT_STEPS,
    log_tail,
    render_alert,
    render_digest,
    studio_run_url,
)
from orchestrators.alert_policy import (
    Alert,
    AlertPolicy,
    FailureKind,
    PolicyState,
    decide,
    take_digest,
)

T0 = datetime(2025, 3, 3, 8, 0, tzinfo=UTC)


def failing_alert(**kw: object) -> Alert:
    log = "\n".join(f"line {i}" for i in range(1, 101)) + "\nValueError: <bad> & worse"
    fields: dict[str, object] = {
        "id": "evt-42",
        "kind": FailureKind.STEP_FAILED,
        "pipeline": "train",
        "segment": "east-large-fast",
        "occurred_at": T0,
        "job_name": "train_east_20250303",
        "link": studio_run_url("train_east_20250303", "sub-1", "rg-ml", "ws-forecast"),
        "last_status": "Failed",
        "log_excerpt": log,
        "detail": "step 'train' exited with 1",
    }
    fields.update(kw)
    return Alert(**fields)  # type: ignore[arg-type]


def test_studio_link_has_the_documented_shape() -> None:
    assert studio_run_url("run 1", "sub", "rg", "ws") == (
        "https://ml.azure.com/runs/run%201?wsid=/subscriptions/sub/resourcegroups/rg/workspaces/ws"
    )


def test_alert_email_says_what_where_which_segment_status_next_steps_and_log() -> None:
    a = failing_alert()
    email = render_alert(a)
    assert email.subject.startswith("ERROR east-large-fast:")
    assert "train_east_20250303" in email.subject and len(email.subject) <= 120
    text = email.text
    for expected in (
        "a pipeline step failed",
        "east-large-fast",
        "train_east_20250303",
        a.link,
        "Failed",
        "What to do next",
        NEXT_STEPS[a.kind][0],
        "step 'train' exited with 1",
        "evt-42",
    ):
        assert expected in text
    # The log excerpt is bounded to the last lines, and the newest line is kept.
    assert "ValueError: <bad> & worse" in text
    assert "line 60\n" not in text and "line 62" in text
    assert email.html is not None
    assert "ValueError: &lt;bad&gt; &amp; worse" in email.html
    assert f'<a href="{a.link.replace("&", "&amp;")}">' in email.html
    assert email.headers["X-MLOps-Signature"] == "train|east-large-fast|step_failed"
    assert email.message_id == "alert-evt-42"


def test_each_failure_kind_gets_its_own_advice_and_severity() -> None:
    subjects = {k: render_alert(failing_alert(kind=k)) for k in FailureKind}
    assert subjects[FailureKind.CANCELED].subject.startswith("WARNING east-large-fast:")
    assert subjects[FailureKind.TIMED_OUT].subject.startswith("ERROR east-large-fast:")
    assert "quarantine" in subjects[FailureKind.DATA_QUALITY].text
    assert "heartbeats" in subjects[FailureKind.NOT_RESPONDING].text
    assert len({e.text for e in subjects.values()}) == len(FailureKind)


def test_local_link_and_missing_facts_render_plainly() -> None:
    email = render_alert(
        failing_alert(link=".local/aml/jobs/j1/job.json", segment="", log_excerpt="", job_name="")
    )
    assert email.subject.startswith("ERROR all segments:")
    assert ".local/aml/jobs/j1/job.json" in email.text and "Log excerpt: (none)" in email.text
    assert email.html is not None and "<a href" not in email.html


def test_log_tail_bounds_lines_and_width() -> None:
    text = "\n".join("x" * 1000 for _ in range(100))
    tail = log_tail(text)
    assert len(tail.splitlines()) == LOG_LINES
    assert all(len(line) <= 400 for line in tail.splitlines())
    assert log_tail("   \n") == ""


def test_digest_lists_every_suppressed_signature_with_counts() -> None:
    policy = AlertPolicy(max_per_window=1)
    state = PolicyState()
    for i in range(30):
        a = failing_alert(id=f"e{i}", segment=f"seg{i % 3}")
        state = decide(state, a, T0 + timedelta(seconds=i), policy)[1]
    digest, _ = take_digest(state, T0 + timedelta(hours=1), policy)
    assert digest is not None
    email = render_digest(digest)
    assert email.subject.startswith(
        "WARNING 3 segments: 29 more failure alert(s) in 3 signature(s)"
    )
    assert "train / seg0 / step_failed: 9 alert(s) (9 duplicate, 0 rate-limited)" in email.text
    assert "train / seg1 / step_failed: 10 alert(s) (0 duplicate, 10 rate-limited)" in email.text
    assert "and 5 more" in email.text
    assert email.message_id == digest.id
