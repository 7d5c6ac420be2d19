"""The standard conditioned inputs the pipelines read (CSV files, any number of parts per folder).

shipments   store_id, product_id, week_start (ISO date), quantity
stores      store_id, region, format ("large" | "small"), zip
weather     zip, date (ISO date), then any numeric columns (e.g. temperature, precipitation);
            averaged per store's zip over the 7 days starting at week_start
events      date (ISO date), store_id and/or region (blank = every store), event (a name)
            counted per store and week
"""

from __future__ import annotations

SHIPMENTS = ("store_id", "product_id", "week_start", "quantity")
STORES = ("store_id", "region", "format", "zip")
WEATHER_KEYS = ("zip", "date")
EVENTS = ("date", "event")
SERIES = ("store_id", "product_id")
SEGMENT = ("region", "format", "velocity")
FORMATS = ("large", "small")
VELOCITIES = ("slow", "fast")


def segment_name(region: str, fmt: str, velocity: str) -> str:
    """``region/format/velocity`` — the segment key used in tags, metrics and file names."""
    return f"{region}/{fmt}/{velocity}"


def model_name(segment: str, prefix: str = "forecast") -> str:
    """Registered model name for a segment (Azure ML names allow letters, digits, - and _)."""
    safe = "".join(c if c.isalnum() or c in "-_" else "-" for c in segment.replace("/", "-"))
    return f"{prefix}-{safe}".lower()
