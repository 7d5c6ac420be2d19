"""The model-health dashboard: static HTML pages with inline SVG charts.

    data = collect(Sources.from_settings(settings, lake))   # read the local state
    pages = render_dashboard(data)                          # page name -> HTML (pure)
    write_dashboard(pages, out_dir)                         # <name>.html files

``python -m dashboard build --out DIR`` does all three; ``dashboard.server`` serves the same
pages from a running aiohttp app. Nothing here is imported by the function app.
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
from dashboard.pages import PAGES, render_dashboard

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
    "render_dashboard",
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
