"""Reading timestamps from the outside world (pure).

Azure payloads, registry tags and job records spell times in ISO 8601 with ``Z`` or an
offset, sometimes with seven fractional digits, sometimes with no zone at all (meaning UTC).
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any


def parse_utc(value: Any) -> datetime | None:
    """An aware UTC ``datetime``, or ``None`` when ``value`` is absent or not ISO 8601."""
    if not isinstance(value, str) or not value.strip():
        return None
    try:
        parsed = datetime.fromisoformat(value.strip())
    except ValueError:
        return None
    return parsed.replace(tzinfo=UTC) if parsed.tzinfo is None else parsed.astimezone(UTC)
