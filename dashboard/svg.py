"""Small, dependency-free SVG charts: line charts and (stacked) horizontal bar charts.

Each function returns one self-contained ``<svg>`` element (inline styles, no scripts, no
external references), so a page works offline and from a file. Every chart has a ``<title>``
for screen readers and a legend; an empty chart says so instead of drawing nothing.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from html import escape

FONT = "font-family:system-ui,-apple-system,Segoe UI,Roboto,sans-serif"
AXIS = "#9ca3af"
GRID = "#e5e7eb"
TEXT = "#374151"


@dataclass(frozen=True)
class Series:
    """A line: ``points`` are (x, y); x is a number, or days since 1970 for date axes."""

    name: str
    points: Sequence[tuple[float, float]]
    color: str
    dashed: bool = False


@dataclass(frozen=True)
class RefLine:
    """A horizontal (line chart) or vertical (bar chart) reference line, e.g. a quality bar."""

    value: float
    label: str
    color: str = "#dc2626"


@dataclass(frozen=True)
class Bar:
    """One part of a stacked bar; ``label`` is its tooltip."""

    value: float
    color: str
    label: str


@dataclass(frozen=True)
class BarRow:
    label: str
    parts: Sequence[Bar]
    note: str = ""


def day_number(value: date | datetime) -> float:
    """Days since 1970-01-01 (UTC), the x unit of date axes."""
    if isinstance(value, datetime):
        aware = value if value.tzinfo else value.replace(tzinfo=UTC)
        return aware.timestamp() / 86400.0
    return float((value - date(1970, 1, 1)).days)


def _day_label(x: float) -> str:
    return (datetime(1970, 1, 1, tzinfo=UTC) + timedelta(days=x)).strftime("%Y-%m-%d")


def fmt(value: float) -> str:
    """A compact number for axes and labels."""
    magnitude = abs(value)
    if magnitude >= 10_000:
        return f"{value / 1000:.0f}k"
    if magnitude >= 100:
        return f"{value:.0f}"
    if magnitude >= 10:
        return f"{value:.1f}".rstrip("0").rstrip(".")
    return f"{value:.2f}".rstrip("0").rstrip(".") if value else "0"


def nice_ticks(low: float, high: float, count: int = 5) -> list[float]:
    """Round tick values covering [low, high] (about ``count`` of them)."""
    if not math.isfinite(low) or not math.isfinite(high):
        return [0.0, 1.0]
    if high <= low:
        high = low + (abs(low) or 1.0)
    raw = (high - low) / max(count, 1)
    magnitude = 10 ** math.floor(math.log10(raw))
    step = next(m * magnitude for m in (1, 2, 2.5, 5, 10) if m * magnitude >= raw)
    start = math.floor(low / step) * step
    ticks = [start]
    while ticks[-1] < high - 1e-9 * step:
        ticks.append(round(ticks[-1] + step, 12))
    return ticks


def _svg_open(width: int, height: int, title: str, name: str) -> list[str]:
    return [
        f'<svg xmlns="http://www.w3.org/2000/svg" class="chart" data-chart="{escape(name)}" '
        f'width="{width}" height="{height}" viewBox="0 0 {width} {height}" role="img" '
        f'style="{FONT};background:#fff">',
        f"<title>{escape(title)}</title>",
        f'<text x="12" y="20" font-size="14" font-weight="600" fill="{TEXT}">'
        f"{escape(title)}</text>",
    ]


def _legend(
    items: Sequence[tuple[str, str, bool]], x: float, y: float, width: float
) -> tuple[list[str], int]:
    """Legend entries (name, color, dashed) laid out left to right, wrapping; also returns
    how many rows they take, so the plot can start below them."""
    out: list[str] = []
    cx, cy = x, y
    rows = 1 if items else 0
    for name, color, dashed in items:
        text_width = 7 * len(name) + 28
        if cx + text_width > x + width and cx > x:
            cx, cy = x, cy + 16
            rows += 1
        dash = ' stroke-dasharray="5 3"' if dashed else ""
        out.append(
            f'<line x1="{cx:.1f}" y1="{cy - 4:.1f}" x2="{cx + 18:.1f}" y2="{cy - 4:.1f}" '
            f'stroke="{color}" stroke-width="3"{dash}/>'
            f'<text x="{cx + 23:.1f}" y="{cy:.1f}" font-size="11" fill="{TEXT}">'
            f"{escape(name)}</text>"
        )
        cx += text_width
    return out, rows


def _empty(out: list[str], width: int, height: int, message: str) -> str:
    out.append(
        f'<text x="{width / 2:.0f}" y="{height / 2:.0f}" text-anchor="middle" font-size="12" '
        f'fill="{AXIS}">{escape(message)}</text></svg>'
    )
    return "".join(out)


def line_chart(
    series: Sequence[Series],
    *,
    title: str,
    name: str,
    y_label: str = "",
    dates: bool = False,
    refs: Sequence[RefLine] = (),
    width: int = 440,
    height: int = 240,
    empty_message: str = "no data yet",
) -> str:
    """A line chart with markers; y starts at 0. ``dates``: x values are ``day_number``s."""
    out = _svg_open(width, height, title, name)
    drawn = [s for s in series if s.points]
    if not drawn:
        return _empty(out, width, height, empty_message)
    left, right, top, bottom = 52, 14, 48, 34
    xs = [x for s in drawn for x, _ in s.points]
    ys = [y for s in drawn for _, y in s.points] + [r.value for r in refs]
    x_low, x_high = min(xs), max(xs)
    if x_high - x_low < 1e-9:
        pad = 3.0 if dates else 1.0
        x_low, x_high = x_low - pad, x_high + pad
    y_ticks = nice_ticks(min(0.0, *ys), max(ys) * 1.08 if max(ys) > 0 else 1.0)
    y_low, y_high = y_ticks[0], y_ticks[-1]
    plot_w = width - left - right
    legend = [(s.name, s.color, s.dashed) for s in drawn] + [(r.label, r.color, True) for r in refs]
    marks, legend_rows = _legend(legend, left, 36, plot_w)
    out += marks
    top += 16 * max(legend_rows - 1, 0)
    plot_h = height - top - bottom

    def px(x: float) -> float:
        return left + (x - x_low) / (x_high - x_low) * plot_w

    def py(y: float) -> float:
        return top + plot_h - (y - y_low) / (y_high - y_low) * plot_h

    for t in y_ticks:
        out.append(
            f'<line x1="{left}" y1="{py(t):.1f}" x2="{left + plot_w}" y2="{py(t):.1f}" '
            f'stroke="{GRID}"/><text x="{left - 6}" y="{py(t) + 4:.1f}" text-anchor="end" '
            f'font-size="10" fill="{TEXT}">{fmt(t)}</text>'
        )
    x_ticks = (
        [x_low + i * (x_high - x_low) / 3 for i in range(4)]
        if dates
        else nice_ticks(x_low, x_high, 4)
    )
    shown = [t for t in x_ticks if x_low - 1e-9 <= t <= x_high + 1e-9]
    for i, t in enumerate(shown):
        label = _day_label(t) if dates else fmt(t)
        # The outermost labels hang inwards so they are not clipped at the chart's edges.
        anchor = "start" if i == 0 else "end" if i == len(shown) - 1 else "middle"
        out.append(
            f'<text x="{px(t):.1f}" y="{top + plot_h + 16}" text-anchor="{anchor}" '
            f'font-size="10" fill="{TEXT}">{label}</text>'
        )
    out.append(
        f'<line x1="{left}" y1="{top + plot_h}" x2="{left + plot_w}" y2="{top + plot_h}" '
        f'stroke="{AXIS}"/><line x1="{left}" y1="{top}" x2="{left}" y2="{top + plot_h}" '
        f'stroke="{AXIS}"/>'
    )
    if y_label:
        out.append(
            f'<text x="12" y="{top + plot_h / 2:.1f}" font-size="10" fill="{TEXT}" '
            f'transform="rotate(-90 12 {top + plot_h / 2:.1f})" text-anchor="middle">'
            f"{escape(y_label)}</text>"
        )
    for r in refs:
        out.append(
            f'<line x1="{left}" y1="{py(r.value):.1f}" x2="{left + plot_w}" '
            f'y2="{py(r.value):.1f}" stroke="{r.color}" stroke-width="1.5" '
            f'stroke-dasharray="6 4"><title>{escape(r.label)}: {fmt(r.value)}</title></line>'
        )
    for s in drawn:
        pts = sorted(s.points)
        dash = ' stroke-dasharray="6 4"' if s.dashed else ""
        path = " ".join(f"{px(x):.1f},{py(y):.1f}" for x, y in pts)
        out.append(
            f'<polyline points="{path}" fill="none" stroke="{s.color}" stroke-width="2.5"{dash}/>'
        )
        for x, y in pts:
            label = _day_label(x) if dates else fmt(x)
            out.append(
                f'<circle cx="{px(x):.1f}" cy="{py(y):.1f}" r="3.5" fill="{s.color}">'
                f"<title>{escape(s.name)} {label}: {fmt(y)}</title></circle>"
            )
    out.append("</svg>")
    return "".join(out)


def bar_chart(
    rows: Sequence[BarRow],
    *,
    title: str,
    name: str,
    x_label: str = "",
    refs: Sequence[RefLine] = (),
    legend: Sequence[tuple[str, str]] = (),
    width: int = 680,
    row_height: int = 24,
    empty_message: str = "no data yet",
) -> str:
    """Horizontal bars, one row per ``BarRow``, parts stacked left to right."""
    if not rows or all(not r.parts for r in rows):
        height = 100
        return _empty(_svg_open(width, height, title, name), width, height, empty_message)
    label_w = min(220, 14 + 7 * max(len(r.label) for r in rows))
    left, right = label_w, 70
    plot_w = width - left - right
    items = [(n, c, False) for n, c in legend] + [(r.label, r.color, True) for r in refs]
    marks, legend_rows = _legend(items, left, 36, plot_w)
    top = 34 + 16 * legend_rows + 8
    height = top + len(rows) * row_height + 38
    out = _svg_open(width, height, title, name) + marks
    totals = [sum(p.value for p in r.parts) for r in rows]
    ticks = nice_ticks(0.0, max([*totals, *(r.value for r in refs), 1e-9]) * 1.02, 5)
    high = ticks[-1]

    def px(x: float) -> float:
        return left + x / high * plot_w

    bottom = top + len(rows) * row_height
    for t in ticks:
        out.append(
            f'<line x1="{px(t):.1f}" y1="{top}" x2="{px(t):.1f}" y2="{bottom}" stroke="{GRID}"/>'
            f'<text x="{px(t):.1f}" y="{bottom + 14}" text-anchor="middle" font-size="10" '
            f'fill="{TEXT}">{fmt(t)}</text>'
        )
    for i, row in enumerate(rows):
        y = top + i * row_height
        out.append(
            f'<text x="{left - 8}" y="{y + row_height / 2 + 4:.1f}" text-anchor="end" '
            f'font-size="11" fill="{TEXT}">{escape(row.label)}</text>'
        )
        x = 0.0
        for part in row.parts:
            if part.value <= 0:
                continue
            out.append(
                f'<rect x="{px(x):.1f}" y="{y + 4}" width="{max(px(part.value) - left, 1.0):.1f}" '
                f'height="{row_height - 8}" fill="{part.color}"><title>{escape(part.label)}'
                f"</title></rect>"
            )
            x += part.value
        if row.note:
            out.append(
                f'<text x="{px(x) + 5:.1f}" y="{y + row_height / 2 + 4:.1f}" font-size="10" '
                f'fill="{TEXT}">{escape(row.note)}</text>'
            )
    out.append(
        f'<line x1="{left}" y1="{top}" x2="{left}" y2="{bottom}" stroke="{AXIS}"/>'
        f'<line x1="{left}" y1="{bottom}" x2="{left + plot_w}" y2="{bottom}" stroke="{AXIS}"/>'
    )
    for r in refs:
        out.append(
            f'<line x1="{px(r.value):.1f}" y1="{top - 4}" x2="{px(r.value):.1f}" '
            f'y2="{bottom}" stroke="{r.color}" stroke-width="2" stroke-dasharray="6 4">'
            f"<title>{escape(r.label)}</title></line>"
        )
    if x_label:
        out.append(
            f'<text x="{left + plot_w / 2:.1f}" y="{bottom + 30}" text-anchor="middle" '
            f'font-size="10" fill="{TEXT}">{escape(x_label)}</text>'
        )
    out.append("</svg>")
    return "".join(out)
