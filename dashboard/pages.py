"""The dashboard's pages as HTML strings, rendered from ``DashboardData`` alone (pure).

Pages link to each other through ``link(page)``: relative ``<name>.html`` by default, so the
HTML works as files on disk (``python -m dashboard build``); the dashboard function passes
links under its own route that carry the caller's function key along.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable, Iterable, Sequence
from datetime import date
from html import escape

from dashboard.model import MEASURE_TITLES, MEASURES, DashboardData, JobRun, ModelPoint
from dashboard.svg import Bar, BarRow, RefLine, Series, bar_chart, day_number, fmt, line_chart

PAGES = ("index", "training", "monitoring", "scoring")
TITLES = {
    "index": "Overview",
    "training": "Training",
    "monitoring": "Monitoring",
    "scoring": "Scoring",
}
CANDIDATE = "#2563eb"
BASELINE = "#6b7280"
SEASONAL_NAIVE = "#7c3aed"
CHAMPION = "#d97706"
ACTUAL = "#111827"
GOOD = "#16a34a"
BAD = "#dc2626"
PALETTE = ("#2563eb", "#d97706", "#7c3aed", "#0d9488", "#db2777", "#65a30d", "#0891b2",
           "#9333ea", "#ea580c", "#4b5563")  # fmt: skip

CSS = """
body{margin:0;font-family:system-ui,-apple-system,Segoe UI,Roboto,sans-serif;color:#111827;
background:#f3f4f6}
header{background:#1e3a8a;color:#fff;padding:12px 24px;display:flex;gap:24px;align-items:center}
header h1{font-size:18px;margin:0}
nav a{color:#c7d2fe;margin-right:16px;text-decoration:none;font-weight:500}
nav a.current{color:#fff;border-bottom:2px solid #fff}
main{padding:16px 24px}
section{background:#fff;border-radius:8px;padding:12px 16px;margin-bottom:16px;
box-shadow:0 1px 2px rgba(0,0,0,.08)}
h2{font-size:16px;margin:4px 0 8px}
h3{font-size:14px;margin:12px 0 4px}
p.help{color:#4b5563;font-size:13px;margin:4px 0 10px}
.charts{display:flex;flex-wrap:wrap;gap:12px}
.charts svg{border:1px solid #e5e7eb;border-radius:6px}
table{border-collapse:collapse;font-size:12px;margin-top:8px}
th,td{border-bottom:1px solid #e5e7eb;padding:4px 8px;text-align:left}
th{background:#f9fafb}
td.num{text-align:right;font-variant-numeric:tabular-nums}
.bad{color:#b91c1c;font-weight:600}
.good{color:#15803d;font-weight:600}
.problems{background:#fef3c7;border:1px solid #f59e0b;border-radius:6px;padding:8px 12px}
.cards{display:flex;gap:12px;flex-wrap:wrap}
.card{background:#fff;border-radius:8px;padding:12px 16px;min-width:150px;
box-shadow:0 1px 2px rgba(0,0,0,.08)}
.card .value{font-size:26px;font-weight:700}
.card .label{font-size:12px;color:#4b5563}
footer{color:#6b7280;font-size:11px;padding:0 24px 16px}
"""


Link = Callable[[str], str]


def relative_link(page: str) -> str:
    return f"{page}.html"


def render_dashboard(data: DashboardData, link: Link = relative_link) -> dict[str, str]:
    """Every page: name (``index``, ``training``, ``monitoring``, ``scoring``) → HTML.

    Write each as ``<name>.html``. The pages have no scripts and no external references.
    """
    return {name: render_page(data, name, link) for name in PAGES}


def render_page(data: DashboardData, name: str, link: Link = relative_link) -> str:
    """One page (``name`` in ``PAGES``; anything else is a ``KeyError``)."""
    bodies = {
        "index": lambda: _overview(data, link),
        "training": lambda: _training(data),
        "monitoring": lambda: _monitoring(data),
        "scoring": lambda: _scoring(data),
    }
    return _page(name, bodies[name](), data, link)


def _page(name: str, body: str, data: DashboardData, link: Link) -> str:
    links = "".join(
        f'<a href="{escape(link(p))}"{" class=current" if p == name else ""}>{TITLES[p]}</a>'
        for p in PAGES
    )
    problems = ""
    if data.problems:
        items = "".join(f"<li>{escape(p)}</li>" for p in data.problems)
        problems = (
            '<section class="problems"><strong>Some data could not be read</strong>'
            f"<ul>{items}</ul></section>"
        )
    stamp = data.generated_at.strftime("%Y-%m-%d %H:%M UTC")
    return (
        "<!DOCTYPE html>\n<html lang=en><head><meta charset=utf-8>"
        '<meta name=viewport content="width=device-width,initial-scale=1">'
        '<link rel=icon href="data:,">'
        f"<title>Model health — {TITLES[name]}</title><style>{CSS}</style></head><body>"
        f"<header><h1>Model health</h1><nav>{links}</nav></header><main>{problems}{body}</main>"
        f"<footer>Generated {stamp} from the summary the app keeps of model versions, "
        "pipeline jobs, conditioned data and forecasts.</footer></body></html>\n"
    )


def _table(headers: Sequence[str], rows: Iterable[Sequence[str]], numeric: set[int]) -> str:
    head = "".join(f"<th>{escape(h)}</th>" for h in headers)
    body = "".join(
        "<tr>"
        + "".join(
            f'<td class="num">{c}</td>' if i in numeric else f"<td>{c}</td>"
            for i, c in enumerate(r)
        )
        + "</tr>"
        for r in rows
    )
    return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


def _num(value: float | None, digits: int = 3) -> str:
    return "–" if value is None else f"{value:.{digits}f}"


def _by_segment(models: Iterable[ModelPoint]) -> dict[str, list[ModelPoint]]:
    out: dict[str, list[ModelPoint]] = defaultdict(list)
    for m in models:
        out[m.segment].append(m)
    for versions in out.values():
        versions.sort(key=lambda m: int(m.version) if m.version.isdigit() else 0)
    return dict(sorted(out.items()))


# ---------------------------------------------------------------- overview


def _overview(data: DashboardData, link: Link) -> str:
    champions = data.champions()
    stale = [s for s, m in champions.items() if (data.age_days(m) or 0.0) > data.stale_after_days]
    failed = [j for j in data.jobs if j.failed]
    rejected = sum(r.rows_rejected for r in data.conditioning)
    rows_in = sum(r.rows_in for r in data.conditioning)
    cards = [
        (str(len(data.segments())), "segments with models", ""),
        (str(len(champions)), "segments with a champion", ""),
        (
            str(len(stale)),
            f"stale champions (> {data.stale_after_days:.0f} days)",
            "bad" if stale else "good",
        ),
        (
            f"{len(failed)} / {len(data.jobs)}",
            "failed of the latest pipeline jobs",
            "bad" if failed else "good",
        ),
        (f"{rejected:,}", f"rows rejected of {rows_in:,}", "bad" if rejected else "good"),
        (str(len(data.forecasts)), "segments in the latest scoring run", ""),
    ]
    html = "".join(
        f'<div class="card"><div class="value {cls}">{escape(v)}</div>'
        f'<div class="label">{escape(label)}</div></div>'
        for v, label, cls in cards
    )
    pages = (
        f'<section><h2>Pages</h2><p class="help"><a href="{escape(link("training"))}">Training'
        "</a>: holdout MAPE, RMSE 0 and RMSE All of each segment's model versions against the "
        "historical-average baseline and the champion. "
        f'<a href="{escape(link("monitoring"))}">Monitoring</a>: model age against the '
        "staleness line, rows rejected by conditioning per source and reason, pipeline step "
        f'durations and failures. <a href="{escape(link("scoring"))}">Scoring</a>: the latest '
        "forecasts against actual shipments.</p></section>"
    )
    empty = ""
    if data.is_empty():
        empty = (
            '<section class="empty"><h2>No data recorded yet</h2><p class="help">The app '
            "records model versions when a training is gated, jobs when their monitor sees them "
            "finish, dataset versions as raw files are conditioned, and forecasts when a "
            "scoring run is collected. None of that has happened here yet.</p></section>"
        )
    return (
        f'{empty}<section><h2>At a glance</h2><div class="cards">{html}</div></section>'
        f"{_model_tests(data)}{pages}"
    )


def _model_tests(data: DashboardData) -> str:
    tested = sorted(
        (m for m in data.models if m.test),
        key=lambda m: (m.trained_at.isoformat() if m.trained_at else "", m.model_name, m.version),
    )[-10:]
    if not tested:
        return ""
    rows = [
        [
            escape(m.segment),
            escape(f"{m.model_name} v{m.version}"),
            f'<span class="{"good" if m.test == "pass" else "bad"}">{escape(m.test)}</span>',
            escape(m.role or "–"),
        ]
        for m in reversed(tested)
    ]
    table = _table(["segment", "model", "offline test", "role"], rows, set())
    return f"<section><h2>Latest model tests</h2>{table}</section>"


# ---------------------------------------------------------------- training


def _training(data: DashboardData) -> str:
    segments = _by_segment(data.models)
    parts = [
        "<section><h2>Training quality per segment</h2><p class=help>Each point is a registered "
        "model version, placed at its training time. Blue: the candidate (ensemble) on the "
        "holdout; grey dashed: the historical-average baseline on the same rows; purple dashed: "
        "the seasonal naive forecast (same week last year), a second baseline; orange: the "
        f"champion it had to beat. A candidate is promoted only with MAPE ≤ {data.max_mape:g} "
        "(red line) and better than the historical average and the champion; beating seasonal "
        "naive is shown, not required. MAPE counts the rows whose actual is at least one "
        "unit; WAPE is the total absolute error over the total actual; WMAE weighs holiday "
        "weeks 5; RMSE 0 is measured on rows whose actual is zero, RMSE All on every "
        "row.</p></section>"
    ]
    if not segments:
        parts.append("<section><p>No model versions in the registry yet.</p></section>")
    for segment, versions in segments.items():
        charts = []
        for measure in MEASURES:
            series = []
            for component, label, color, dashed in (
                ("ensemble", "candidate", CANDIDATE, False),
                ("baseline", "baseline", BASELINE, True),
                ("seasonal_naive", "seasonal naive", SEASONAL_NAIVE, True),
                ("champion", "champion", CHAMPION, False),
            ):
                points = [
                    (day_number(m.trained_at), value)
                    for m in versions
                    if m.trained_at is not None
                    and (value := m.metric(component, measure)) is not None
                ]
                series.append(Series(label, points, color, dashed))
            refs = [RefLine(data.max_mape, "MAPE bar")] if measure == "mape" else []
            empty = "no rows with actual = 0" if measure == "rmse_zero" else "no metrics yet"
            charts.append(
                line_chart(
                    series,
                    title=f"{MEASURE_TITLES[measure]}",
                    name=f"training-{segment}-{measure}",
                    dates=True,
                    refs=refs,
                    width=380,
                    height=220,
                    empty_message=empty,
                )
            )
        rows = []
        for m in reversed(versions[-6:]):
            cand, base = m.metric("ensemble", "mape"), m.metric("baseline", "mape")
            naive = m.metric("seasonal_naive", "mape")
            gain = f"{(1 - cand / base) * 100:.0f}%" if cand is not None and base else "–"
            gate_cls = "good" if m.gate == "pass" else "bad" if m.gate == "fail" else ""
            rows.append(
                [
                    escape(m.version),
                    escape(m.trained_at.strftime("%Y-%m-%d") if m.trained_at else "–"),
                    escape(m.role or "–"),
                    f'<span class="{gate_cls}">{escape(m.gate or "–")}</span>',
                    _num(cand),
                    _num(base),
                    _num(naive),
                    gain,
                    _num(m.metric("ensemble", "rmse_zero"), 2),
                    _num(m.metric("ensemble", "rmse_all"), 2),
                ]
            )
        table = _table(
            ["version", "trained", "role", "gate", "MAPE", "baseline MAPE",
             "seasonal naive MAPE", "MAPE reduction", "RMSE 0", "RMSE All"],
            rows,
            {4, 5, 6, 7, 8, 9},
        )  # fmt: skip
        parts.append(
            f"<section><h2>{escape(segment)} <small>({escape(versions[-1].model_name)})</small>"
            f'</h2><div class="charts">{"".join(charts)}</div>{table}</section>'
        )
    return "".join(parts)


# ---------------------------------------------------------------- monitoring


def _monitoring(data: DashboardData) -> str:
    return _model_age(data) + _data_quality(data) + _pipeline_steps(data)


def _model_age(data: DashboardData) -> str:
    champions = data.champions()
    rows = []
    for segment, m in sorted(champions.items()):
        age = data.age_days(m)
        if age is None:
            continue
        stale = age > data.stale_after_days
        rows.append(
            BarRow(
                segment,
                [Bar(age, BAD if stale else GOOD, f"{m.model_name} v{m.version}: {age:.1f} days")],
                note=f"{age:.0f} d{' STALE' if stale else ''}",
            )
        )
    chart = bar_chart(
        rows,
        title="Champion model age",
        name="model-age",
        x_label="days since training",
        refs=[RefLine(data.stale_after_days, f"stale after {data.stale_after_days:.0f} days")],
        legend=[("fresh", GOOD), ("stale", BAD)],
        empty_message="no champion models yet",
    )
    without = sorted(set(data.segments()) - set(champions))
    note = (
        f"<p class=help>Segments without a champion: {escape(', '.join(without))}.</p>"
        if without
        else ""
    )
    return (
        "<section><h2>Model age</h2><p class=help>Days since each segment's champion was "
        f"trained. Past the dashed line ({data.stale_after_days:.0f} days) a scoring run flags "
        f"the model as stale and the daily check asks for a retrain.</p>"
        f'<div class="charts">{chart}</div>{note}</section>'
    )


def _data_quality(data: DashboardData) -> str:
    per_source: dict[str, dict[str, int]] = defaultdict(lambda: defaultdict(int))
    totals: dict[str, list[int]] = defaultdict(lambda: [0, 0, 0, 0])
    for run in data.conditioning:
        t = totals[run.source]
        t[0] += run.rows_in
        t[1] += run.rows_out
        t[2] += run.rows_rejected
        t[3] += 1 if run.status == "quarantined" else 0
        counts = dict(run.reject_counts)
        if run.status == "quarantined" and not counts:
            counts[run.reason_code or "file_quarantined"] = max(run.rows_in, 1)
        for reason, n in counts.items():
            per_source[run.source][reason] += n
    reasons = sorted({r for counts in per_source.values() for r in counts})
    colors = {r: PALETTE[i % len(PALETTE)] for i, r in enumerate(reasons)}
    rows = [
        BarRow(
            source,
            [Bar(n, colors[r], f"{source}: {n:,} rows {r}") for r, n in sorted(counts.items())],
            note=f"{sum(counts.values()):,}",
        )
        for source, counts in sorted(per_source.items())
    ]
    chart = bar_chart(
        rows,
        title="Rows rejected per source and reason",
        name="rejects",
        x_label="rows rejected (all versions)",
        legend=[(r, colors[r]) for r in reasons],
        empty_message="no rejected rows",
    )
    table = _table(
        ["source", "versions", "rows in", "rows conditioned", "rows rejected", "rejected %",
         "files quarantined"],
        [
            [
                escape(source),
                str(sum(1 for r in data.conditioning if r.source == source)),
                f"{t[0]:,}",
                f"{t[1]:,}",
                f"{t[2]:,}",
                f"{t[2] / t[0] * 100:.2f}%" if t[0] else "–",
                f'<span class="{"bad" if t[3] else ""}">{t[3]}</span>',
            ]
            for source, t in sorted(totals.items())
        ],
        {1, 2, 3, 4, 5, 6},
    )  # fmt: skip
    if not totals:
        table = "<p class=help>No conditioning runs recorded.</p>"
    return (
        "<section><h2>Data quality</h2><p class=help>Rows the conditioning service rejected "
        "into the quarantine container, by source and reason code (each reason is explained in "
        "docs/data-contracts.md). A whole file quarantined counts under its reason.</p>"
        f'<div class="charts">{chart}</div>{table}</section>'
    )


def _pipeline_steps(data: DashboardData) -> str:
    recent: list[JobRun] = sorted(
        data.jobs, key=lambda j: (j.created_at.isoformat() if j.created_at else "", j.name)
    )[-15:]
    step_names = sorted({s.name for j in recent for s in j.steps})
    colors = {s: PALETTE[i % len(PALETTE)] for i, s in enumerate(step_names)}
    rows = []
    for job in recent:
        parts = []
        for step in job.steps:
            seconds = step.duration_seconds
            if seconds is None:
                continue
            failed = step.status.lower() in ("failed", "canceled", "notresponding")
            parts.append(
                Bar(
                    seconds,
                    BAD if failed else colors[step.name],
                    f"{job.name} {step.name}: {seconds:.1f} s ({step.status})",
                )
            )
        when = job.created_at.strftime("%m-%d %H:%M") if job.created_at else ""
        rows.append(
            BarRow(
                f"{job.pipeline} {when}",
                parts,
                note=job.status + (f" at {job.failed_step}" if job.failed_step else ""),
            )
        )
    chart = bar_chart(
        rows,
        title="Pipeline step durations (latest jobs)",
        name="pipeline-steps",
        x_label="seconds",
        legend=[*((s, colors[s]) for s in step_names), ("failed step", BAD)],
        empty_message="no pipeline jobs recorded",
    )
    failures = list(reversed(data.failed_jobs()))
    failure_rows = [
        [
            escape(j.name),
            escape(j.pipeline),
            f'<span class="bad">{escape(j.status)}</span>',
            escape(j.failed_step or "–"),
            escape(j.error[:200] or "–"),
        ]
        for j in failures
    ]
    headers = ["job", "pipeline", "status", "failed step", "error"]
    table = (
        _table(headers, failure_rows, set())
        if failures
        else '<p class="help good">No failed jobs.</p>'
    )
    done = [j for j in data.jobs if j.status.lower() == "completed"]
    return (
        "<section><h2>Pipeline steps</h2><p class=help>Each bar is one Azure ML pipeline job; "
        "its parts are the steps in the order they ran, sized by run time. A failed step is "
        f"red. {len(done)} of the latest {len(data.jobs)} jobs completed; the failures table "
        "lists the latest failed jobs, newest first.</p>"
        f'<div class="charts">{chart}</div><h3>Failures</h3>{table}</section>'
    )


# ---------------------------------------------------------------- scoring


def _scoring(data: DashboardData) -> str:
    if not data.forecasts:
        return (
            "<section><h2>Latest forecasts</h2><p>No scoring run has written forecasts yet."
            "</p></section>"
        )
    scoring_date = max(f.scoring_date for f in data.forecasts)
    charts = []
    rows = []
    for f in sorted(data.forecasts, key=lambda f: f.segment):
        first = min(f.forecast) if f.forecast else None
        history = {
            w: v for w, v in f.actual.items() if first is None or w >= _weeks_before(first, 26)
        }
        charts.append(
            line_chart(
                [
                    Series("actual", [(day_number(w), v) for w, v in history.items()], ACTUAL),
                    Series(
                        "forecast", [(day_number(w), v) for w, v in f.forecast.items()], CANDIDATE
                    ),
                ],
                title=f"{f.segment}{' (stale model)' if f.stale else ''}",
                name=f"scoring-{f.segment}",
                y_label="units per week",
                dates=True,
                width=440,
                height=230,
            )
        )
        mape, wape = f.overlap_mape(), f.overlap_wape()
        rows.append(
            [
                escape(f.segment),
                escape(f"{f.model_name} v{f.model_version}"),
                '<span class="bad">stale</span>' if f.stale else '<span class="good">fresh</span>',
                f"{f.rows:,}",
                str(len(f.forecast)),
                fmt(sum(f.forecast.values())),
                _num(mape) if mape is not None else "no actuals yet",
                _num(wape) if wape is not None else "–",
            ]
        )
    table = _table(
        ["segment", "model", "age", "forecast rows", "weeks", "forecast total",
         "MAPE vs actuals (weekly totals)", "WAPE (weekly totals)"],
        rows,
        {3, 4, 5, 6},
    )  # fmt: skip
    return (
        f"<section><h2>Latest forecasts — scoring date {escape(scoring_date)}</h2>"
        "<p class=help>Weekly totals per segment: black is actual shipments (the last 26 weeks "
        "before the forecast and any weeks since), blue the champion's forecast. Where both "
        "exist the table gives their MAPE; a stale model was trained more than "
        f"{data.stale_after_days:.0f} days before the scoring date.</p>"
        f'<div class="charts">{"".join(charts)}</div>{table}</section>'
    )


def _weeks_before(day: date, weeks: int) -> date:
    from datetime import timedelta

    return day - timedelta(weeks=weeks)
