"""The model-health dashboard: HTML pages with inline SVG charts, served by the app.

    record_job(store, job) ...                      # the app folds events into the summary
    data = load_dashboard(store)                    # four small documents -> DashboardData
    html = render_page(data, "training")            # one page (pure)

The function ``on_dashboard_get`` (``triggers/dashboard.py``) serves the pages locally and in
Azure; ``python -m dashboard build --out DIR`` writes them as files; ``dashboard.collect``
scans the whole state once for ``python -m dashboard backfill``. Importing this package is
cheap (no pandas, no SDK clients).
"""

from __future__ import annotations

from pathlib import Path

from dashboard.collect import Sources, collect
from dashboard.model import (
    ConditioningRun,
    DashboardData,
    ForecastSeries,
    JobRun,
    ModelPoint,
    StepRun,
)
from dashboard.pages import PAGES, render_dashboard, render_page
from dashboard.summary import load_dashboard

__all__ = [
    "PAGES",
    "ConditioningRun",
    "DashboardData",
    "ForecastSeries",
    "JobRun",
    "ModelPoint",
    "Sources",
    "StepRun",
    "collect",
    "load_dashboard",
    "render_dashboard",
    "render_page",
    "write_dashboard",
]


def write_dashboard(pages: dict[str, str], out_dir: Path) -> list[Path]:
    """Write each page as ``out_dir/<name>.html`` (the directory is created); returns paths."""
    out_dir.mkdir(parents=True, exist_ok=True)
    written = []
    for name, html in sorted(pages.items()):
        path = out_dir / f"{name}.html"
        tmp = path.with_suffix(".html.tmp")
        tmp.write_text(html, encoding="utf-8")
        tmp.replace(path)
        written.append(path)
    return written
