from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from local.hosting.schedules import Schedule
from local.hosting.templates import TemplateError

T0 = datetime(2026, 11, 26, 10, 3, 7, tzinfo=UTC)  # a Thursday


@pytest.mark.parametrize(
    ("expr", "expected"),
    [
        ("0 */5 * * * *", datetime(2026, 11, 26, 10, 5, 0, tzinfo=UTC)),
        ("*/10 * * * * *", datetime(2026, 11, 26, 10, 3, 10, tzinfo=UTC)),
        ("0 0 6 * * 1", datetime(2026, 11, 30, 6, 0, 0, tzinfo=UTC)),  # Mondays 06:00
        ("0 30 2 * * *", datetime(2026, 11, 27, 2, 30, 0, tzinfo=UTC)),
        ("0 0 0 1 1 *", datetime(2027, 1, 1, 0, 0, 0, tzinfo=UTC)),
    ],
)
def test_ncrontab_next_occurrence(expr: str, expected: datetime) -> None:
    assert Schedule.parse(expr).next_after(T0) == expected


def test_timespan_schedules_repeat_by_interval() -> None:
    s = Schedule.parse("00:05:00")
    assert s.interval == timedelta(minutes=5)
    assert s.next_after(T0) == T0 + timedelta(minutes=5)
    assert Schedule.parse("1.00:00:00").interval == timedelta(days=1)


@pytest.mark.parametrize("bad", ["* * * * *", "0 61 * * * *", "00:00:00", "every day", ""])
def test_bad_schedules_name_the_expression(bad: str) -> None:
    with pytest.raises(TemplateError, match="schedule"):
        Schedule.parse(bad)
