"""The holiday calendar: known for any week, past or future, from the date alone.

A week is the seven days starting at its ``week_start``. Four holidays move demand in the
case study's markets and define the holiday weeks of the Walmart competition metric (WMAE
weighs them 5): the Super Bowl (the first Sunday of February until 2021, the second since
2022), Labor Day (the first Monday of September), Thanksgiving (the fourth Thursday of
November) and Christmas (25 December). A week is a holiday week when one of them falls
inside it.

Christmas moves through the weekdays from year to year, so the week 52 weeks before a
Christmas week may or may not contain Christmas: ``days_to_christmas`` (of the target week
and of the same week last year) lets a model line the two up.
"""

from __future__ import annotations

import datetime as dt
import functools

import numpy as np
import pandas as pd

HOLIDAYS = ("super_bowl", "labor_day", "thanksgiving", "christmas")
# Beyond these bounds a week is simply "not near Christmas".
CHRISTMAS_WINDOW = (-14, 56)
COLUMNS = ("holiday", *HOLIDAYS, "days_to_christmas")


def _nth_weekday(year: int, month: int, weekday: int, n: int) -> dt.date:
    first = dt.date(year, month, 1)
    return first + dt.timedelta(days=(weekday - first.weekday()) % 7 + 7 * (n - 1))


@functools.lru_cache(maxsize=512)
def holidays(year: int) -> dict[str, dt.date]:
    """The four holidays of ``year``."""
    super_bowl = _nth_weekday(year, 2, 6, 1 if year <= 2021 else 2)
    return {
        "super_bowl": super_bowl,
        "labor_day": _nth_weekday(year, 9, 0, 1),
        "thanksgiving": _nth_weekday(year, 11, 3, 4),
        "christmas": dt.date(year, 12, 25),
    }


def _week_contains(starts: pd.Series, name: str) -> np.ndarray:
    days = pd.to_datetime(starts).dt.normalize()
    out = np.zeros(len(days), dtype=bool)
    for year_offset in (0, 1):  # a week starting late in December ends in the next year
        years = days.dt.year + year_offset
        day = pd.to_datetime([holidays(int(y))[name] for y in years], errors="coerce").to_numpy()
        delta = (day - days.to_numpy()) / np.timedelta64(1, "D")
        out |= (delta >= 0) & (delta <= 6)
    return out


def week_calendar(week_start: pd.Series) -> pd.DataFrame:
    """Per week: one flag per holiday, ``holiday`` (any of them) and ``days_to_christmas``
    (from the week's first day to the Christmas of its year, clipped to ``CHRISTMAS_WINDOW``)."""
    starts = pd.to_datetime(pd.Series(week_start)).dt.normalize()
    index = pd.Series(week_start).index
    out = pd.DataFrame(index=index)
    if starts.empty:
        for column in COLUMNS:
            out[column] = pd.Series(dtype=float)
        return out
    unique = pd.Series(starts.unique())
    flags = [_week_contains(unique, name).astype(float) for name in HOLIDAYS]
    christmas = pd.to_datetime(unique.dt.year.astype(str) + "-12-25")
    to_christmas = (christmas - unique).dt.days.clip(*CHRISTMAS_WINDOW).to_numpy(dtype=float)
    table = np.column_stack([np.max(np.stack(flags), axis=0), *flags, to_christmas])
    codes = pd.Index(unique).get_indexer(starts)
    for j, column in enumerate(COLUMNS):
        out[column] = table[codes, j]
    return out


def holiday_weeks(week_start: pd.Series) -> np.ndarray:
    """True for the weeks containing one of the four holidays (WMAE's weight-5 weeks)."""
    flags: np.ndarray = week_calendar(week_start)["holiday"].to_numpy(dtype=bool)
    return flags
