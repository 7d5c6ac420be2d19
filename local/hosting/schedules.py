"""Timer schedules as the Functions host reads them (pure).

Two forms: a six-field NCRONTAB expression ``{second} {minute} {hour} {day} {month} {dow}``
(evaluated in UTC, like the host without WEBSITE_TIME_ZONE), or a TimeSpan ``hh:mm:ss`` /
``d.hh:mm:ss`` meaning "every interval".
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import datetime, timedelta

from croniter import croniter

from local.hosting.templates import TemplateError

_TIMESPAN = re.compile(r"^(?:(\d+)\.)?(\d{1,2}):(\d{2}):(\d{2})$")


@dataclass(frozen=True)
class Schedule:
    expression: str
    interval: timedelta | None

    @classmethod
    def parse(cls, expression: str) -> Schedule:
        expr = expression.strip()
        m = _TIMESPAN.match(expr)
        if m:
            days, hours, minutes, seconds = (int(g or 0) for g in m.groups())
            interval = timedelta(days=days, hours=hours, minutes=minutes, seconds=seconds)
            if interval <= timedelta(0):
                raise TemplateError(f"schedule {expression!r}: the interval must be positive")
            return cls(expr, interval)
        fields = expr.split()
        if len(fields) != 6:
            raise TemplateError(
                f"schedule {expression!r}: expected 6 NCRONTAB fields "
                "'{second} {minute} {hour} {day} {month} {day-of-week}' or a TimeSpan hh:mm:ss"
            )
        if not croniter.is_valid(expr, second_at_beginning=True):
            raise TemplateError(f"schedule {expression!r} is not a valid NCRONTAB expression")
        return cls(expr, None)

    def next_after(self, moment: datetime) -> datetime:
        """The first occurrence strictly after ``moment`` (an aware UTC datetime)."""
        if self.interval is not None:
            return moment + self.interval
        it = croniter(self.expression, moment, second_at_beginning=True)
        result: datetime = it.get_next(datetime)
        return result
