"""What an alert email says. Pure: an ``Alert`` or a ``Digest`` in, an ``Email`` out.

An alert email answers, in this order: what failed, for which segment, where (job name and
link), the last status, what to do next (advice per failure kind), and the end of the log.
The subject is short and starts with the severity and the segment, so a mail filter or a
phone notification shows what matters first.
"""

from __future__ import annotations

import html
from collections.abc import Sequence
from urllib.parse import quote

from adapters.notify import Email
from orchestrators.alert_policy import Alert, Digest, FailureKind, Severity

LOG_LINES = 40
LOG_LINE_CHARS = 400
SUBJECT_CHARS = 120
STUDIO_RUN_URL = (
    "https://ml.azure.com/runs/{run_id}?wsid=/subscriptions/{sub}/resourcegroups/{rg}"
    "/workspaces/{ws}"
)

WHAT_FAILED: dict[FailureKind, str] = {
    FailureKind.STEP_FAILED: "a pipeline step failed",
    FailureKind.TIMED_OUT: "the job ran past its deadline and was canceled",
    FailureKind.CANCELED: "the job was canceled",
    FailureKind.NOT_RESPONDING: "the job stopped responding",
    FailureKind.DATA_QUALITY: "the input data failed its quality checks",
}

NEXT_STEPS: dict[FailureKind, tuple[str, ...]] = {
    FailureKind.STEP_FAILED: (
        "Open the job link and find the failed step (red in the pipeline graph).",
        "Read that step's std_log / user_logs; the excerpt below is the end of it.",
        "Fix the cause (code, data or environment), then start the run again "
        "(POST /api/orchestrations/train or the ADF pipeline).",
    ),
    FailureKind.TIMED_OUT: (
        "Check whether the job was queued for long (compute quota, cluster at max nodes) or "
        "ran slowly (more data than usual).",
        "Raise the cluster size or the deadline if this is the new normal, then start the run "
        "again.",
    ),
    FailureKind.CANCELED: (
        "Confirm who or what canceled it (the job's activity log); if it was not intended, "
        "start the run again.",
    ),
    FailureKind.NOT_RESPONDING: (
        "The compute node stopped sending heartbeats: check the cluster's node health and "
        "recent low-priority preemptions.",
        "Start the run again; if it repeats, move the job to dedicated nodes.",
    ),
    FailureKind.DATA_QUALITY: (
        "Open the quarantine report for this segment's input (rejects.csv lists each bad row "
        "and why).",
        "Ask the data owner to correct the source, or fix the mapping, then re-drop the file; "
        "the model was not retrained on this data.",
    ),
}


def studio_run_url(run_id: str, subscription_id: str, resource_group: str, workspace: str) -> str:
    """The Azure ML studio page of a job (run)."""
    return STUDIO_RUN_URL.format(
        run_id=quote(run_id, safe=""),
        sub=quote(subscription_id, safe=""),
        rg=quote(resource_group, safe=""),
        ws=quote(workspace, safe=""),
    )


def log_tail(text: str, lines: int = LOG_LINES, width: int = LOG_LINE_CHARS) -> str:
    """The last ``lines`` lines of ``text``, each cut to ``width`` characters."""
    kept = text.rstrip("\n").splitlines()[-lines:] if text.strip() else []
    return "\n".join(line if len(line) <= width else line[: width - 1] + "…" for line in kept)


def _one_line(text: str, limit: int) -> str:
    flat = " ".join(text.split())
    return flat if len(flat) <= limit else flat[: limit - 1] + "…"


def alert_subject(alert: Alert) -> str:
    severity = alert.severity or Severity.ERROR
    segment = alert.segment or "all segments"
    job = f" ({alert.job_name})" if alert.job_name else ""
    return _one_line(
        f"{severity.value} {segment}: {alert.pipeline} {alert.kind.value.replace('_', ' ')}{job}",
        SUBJECT_CHARS,
    )


def render_alert(alert: Alert) -> Email:
    """The email for one alert (plain text + HTML alternative)."""
    what = WHAT_FAILED[alert.kind]
    facts: list[tuple[str, str]] = [
        ("What failed", f"{alert.pipeline}: {what}"),
        ("Segment", alert.segment or "all segments"),
        ("Job", alert.job_name or "(not known)"),
        ("Link", alert.link or "(no link)"),
        ("Last status", alert.last_status or "(not known)"),
        ("When", alert.occurred_at.isoformat()),
    ]
    if alert.detail:
        facts.append(("Detail", _one_line(alert.detail, 1000)))
    steps = NEXT_STEPS[alert.kind]
    tail = log_tail(alert.log_excerpt)

    width = max(len(k) for k, _ in facts)
    text = [f"{k + ':':<{width + 1}} {v}" for k, v in facts]
    text += ["", "What to do next:"]
    text += [f"  {i}. {s}" for i, s in enumerate(steps, 1)]
    text += ["", f"Log excerpt (last {LOG_LINES} lines):" if tail else "Log excerpt: (none)"]
    if tail:
        text += ["", *(f"  {line}" for line in tail.splitlines())]
    text += ["", f"Alert id: {alert.id}"]

    return Email(
        message_id=f"alert-{alert.id}",
        subject=alert_subject(alert),
        text="\n".join(text) + "\n",
        html=_html(alert_subject(alert), facts, steps, tail, alert.id),
        headers={
            "X-MLOps-Alert-Id": alert.id,
            "X-MLOps-Signature": alert.signature.key(),
            "X-MLOps-Severity": (alert.severity or Severity.ERROR).value,
        },
    )


def _html(
    title: str, facts: Sequence[tuple[str, str]], steps: Sequence[str], tail: str, alert_id: str
) -> str:
    e = html.escape
    rows = []
    for key, value in facts:
        cell = e(value)
        if key == "Link" and value.startswith(("https://", "http://")):
            cell = f'<a href="{e(value, quote=True)}">{e(value)}</a>'
        rows.append(f"<tr><th align='left'>{e(key)}</th><td>{cell}</td></tr>")
    items = "".join(f"<li>{e(s)}</li>" for s in steps)
    log = f"<pre>{e(tail)}</pre>" if tail else "<p>(none)</p>"
    return (
        f"<html><body><h2>{e(title)}</h2><table>{''.join(rows)}</table>"
        f"<h3>What to do next</h3><ol>{items}</ol>"
        f"<h3>Log excerpt (last {LOG_LINES} lines)</h3>{log}"
        f"<p><small>Alert id: {e(alert_id)}</small></p></body></html>"
    )


def render_digest(digest: Digest) -> Email:
    """The email listing the alerts suppressed between ``opened_at`` and ``closed_at``."""
    segments = sorted({g.signature.segment or "all segments" for g in digest.groups})
    where = segments[0] if len(segments) == 1 else f"{len(segments)} segments"
    subject = _one_line(
        f"WARNING {where}: {digest.total} more failure alert(s) in "
        f"{len(digest.groups)} signature(s)",
        SUBJECT_CHARS,
    )
    lines = [
        f"{digest.total} failure alert(s) were not emailed one by one between "
        f"{digest.opened_at.isoformat()} and {digest.closed_at.isoformat()}:",
        "duplicates repeat a signature already emailed in the dedup window; rate-limited ones "
        "arrived after the hourly email limit was reached.",
        "",
    ]
    html_rows = []
    for g in digest.groups:
        lines.append(
            f"* {g.signature.describe()}: {g.count} alert(s) "
            f"({g.duplicates} duplicate, {g.rate_limited} rate-limited), "
            f"{g.first_at.isoformat()} .. {g.last_at.isoformat()}"
        )
        for s in g.samples:
            where_ = f" {s.link}" if s.link else ""
            lines.append(f"    - {s.job_name or '(job not known)'}{where_} [alert {s.alert_id}]")
        if g.count > len(g.samples):
            lines.append(f"    - … and {g.count - len(g.samples)} more")
        samples = "".join(
            f"<li>{html.escape(s.job_name or '(job not known)')} "
            f"{html.escape(s.link)} [alert {html.escape(s.alert_id)}]</li>"
            for s in g.samples
        )
        html_rows.append(
            f"<tr><td>{html.escape(g.signature.describe())}</td><td>{g.count}</td>"
            f"<td>{g.duplicates}</td><td>{g.rate_limited}</td><td><ul>{samples}</ul></td></tr>"
        )
    lines += ["", "What to do next:", "  1. Treat each signature above like the alert "
              "email already sent for it; start with the ones that were rate-limited, since "
              "no email went out for them.", "", f"Digest id: {digest.id}"]  # fmt: skip
    body_html = (
        f"<html><body><h2>{html.escape(subject)}</h2>"
        "<table><tr><th>signature</th><th>alerts</th><th>duplicate</th>"
        f"<th>rate-limited</th><th>samples</th></tr>{''.join(html_rows)}</table>"
        f"<p><small>Digest id: {html.escape(digest.id)}</small></p></body></html>"
    )
    return Email(
        message_id=digest.id,
        subject=subject,
        text="\n".join(lines) + "\n",
        html=body_html,
        headers={"X-MLOps-Digest-Id": digest.id, "X-MLOps-Severity": Severity.WARNING.value},
    )
