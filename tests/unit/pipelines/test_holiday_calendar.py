"""The holiday calendar puts the holiday flag on the weeks the Walmart competition flags."""

from __future__ import annotations

import datetime as dt

import pandas as pd
import pytest
from forecasting import holiday_calendar as C

# The competition's holiday weeks, as published with its data: the Friday ending each week.
KAGGLE_HOLIDAY_FRIDAYS = {
    "super_bowl": ["2010-02-12", "2011-02-11", "2012-02-10", "2013-02-08"],
    "labor_day": ["2010-09-10", "2011-09-09", "2012-09-07", "2013-09-06"],
    "thanksgiving": ["2010-11-26", "2011-11-25", "2012-11-23", "2013-11-29"],
    "christmas": ["2010-12-31", "2011-12-30", "2012-12-28", "2013-12-27"],
}


def test_every_competition_holiday_week_and_no_other_is_flagged() -> None:
    fridays = pd.Series(pd.date_range("2010-02-05", "2013-12-27", freq="7D"))
    starts = fridays - pd.Timedelta(days=6)  # a Walmart week runs Saturday to Friday
    calendar = C.week_calendar(starts)
    for name, days in KAGGLE_HOLIDAY_FRIDAYS.items():
        flagged = set(fridays[calendar[name] > 0].dt.strftime("%Y-%m-%d"))
        assert flagged == set(days), name
    every = {d for days in KAGGLE_HOLIDAY_FRIDAYS.values() for d in days}
    assert set(fridays[C.holiday_weeks(starts)].dt.strftime("%Y-%m-%d")) == every


def test_the_super_bowl_moved_to_the_second_sunday_in_2022() -> None:
    assert C.holidays(2021)["super_bowl"] == dt.date(2021, 2, 7)
    assert C.holidays(2024)["super_bowl"] == dt.date(2024, 2, 11)


@pytest.mark.parametrize(
    ("monday", "days"),
    [("2024-12-23", 2), ("2024-12-30", -5), ("2024-06-03", 56), ("2025-12-22", 3)],
)
def test_days_to_christmas_lines_up_christmas_whatever_its_weekday(monday: str, days: int) -> None:
    calendar = C.week_calendar(pd.Series([pd.Timestamp(monday)]))
    assert calendar["days_to_christmas"].iat[0] == days
    assert calendar["christmas"].iat[0] == float(0 <= days <= 6)


def test_an_empty_week_list_gives_empty_columns() -> None:
    calendar = C.week_calendar(pd.Series([], dtype="datetime64[ns]"))
    assert list(calendar.columns) == list(C.COLUMNS) and calendar.empty
