"""The SVG chart primitives."""

from __future__ import annotations

import re
from datetime import date

from dashboard.svg import (
    Bar,
    BarRow,
    RefLine,
    Series,
    bar_chart,
    day_number,
    line_chart,
    nice_ticks,
)


def test_nice_ticks_cover_the_range_with_round_steps() -> None:
    assert nice_ticks(0, 0.68) == [0, 0.2, 0.4, 0.6, 0.8]
    assert nice_ticks(0, 37) == [0, 10, 20, 30, 40]
    ticks = nice_ticks(3, 3)  # a flat range still gets an axis
    assert ticks[0] <= 3 < ticks[-1]


def test_line_chart_places_points_inside_the_plot_and_the_reference_line() -> None:
    svg = line_chart(
        [Series("a", [(0, 1.0), (1, 3.0), (2, 2.0)], "#000")],
        title="T",
        name="t",
        refs=[RefLine(2.5, "bar")],
    )
    circles = [(float(x), float(y)) for x, y in re.findall(r'cx="([\d.]+)" cy="([\d.]+)"', svg)]
    assert len(circles) == 3
    width, height = 440, 240
    assert all(0 < x < width and 0 < y < height for x, y in circles)
    # higher values are drawn higher up
    assert circles[1][1] < circles[2][1] < circles[0][1]
    assert "bar: 2.5" in svg


def test_date_axis_labels_are_dates() -> None:
    svg = line_chart(
        [Series("a", [(day_number(date(2024, 1, 1)), 1.0), (day_number(date(2024, 3, 1)), 2.0)],
                "#000")],
        title="T", name="t", dates=True,
    )  # fmt: skip
    assert "2024-01-01" in svg and "2024-03-01" in svg


def test_empty_charts_say_so() -> None:
    assert "nothing" in line_chart([], title="T", name="t", empty_message="nothing")
    assert "nothing" in bar_chart([], title="T", name="t", empty_message="nothing")


def test_stacked_bars_are_proportional_and_the_reference_line_is_placed_by_value() -> None:
    svg = bar_chart(
        [
            BarRow("a", [Bar(10, "#111", "x"), Bar(30, "#222", "y")]),
            BarRow("b", [Bar(20, "#333", "z")]),
        ],
        title="T",
        name="t",
        refs=[RefLine(20, "ref")],
    )  # fmt: skip
    widths = [float(w) for w in re.findall(r'<rect x="[\d.]+" y="\d+" width="([\d.]+)"', svg)]
    assert widths[1] == 3 * widths[0]
    assert widths[2] == 2 * widths[0]
    rects = re.findall(r'<rect x="([\d.]+)"', svg)
    ref_x = float(re.search(r'<line x1="([\d.]+)"[^>]*stroke-dasharray="6 4"', svg).group(1))  # type: ignore[union-attr]
    assert ref_x == float(rects[0]) + 2 * widths[0]
