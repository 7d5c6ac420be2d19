"""Standard data contracts: one schema per source, the single definition of "conditioned".

A contract lists the columns of the standard CSV in their stable order, each with a type, a unit,
whether it may be empty, an allowed range or set of values, and the key that makes a row unique.
``docs/data-contracts.md`` describes the same contracts for people; ``CONTRACT_VERSION`` changes
whenever a contract changes in a way a consumer would notice.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import StrEnum

CONTRACT_VERSION = "1.0"


class ColumnType(StrEnum):
    TEXT = "text"
    INT = "int"
    FLOAT = "float"
    DATE = "date"
    BOOL = "bool"


@dataclass(frozen=True)
class Column:
    """One standard column.

    ``minimum``/``maximum`` bound numbers; ``allowed`` lists the only legal text values;
    ``max_future_days`` bounds dates relative to the run's ``as_of`` day (``None``: no bound);
    ``pattern`` is an RE2 regular expression a text value must match in full.
    """

    name: str
    type: ColumnType
    required: bool = True
    unit: str | None = None
    minimum: float | None = None
    maximum: float | None = None
    allowed: tuple[str, ...] | None = None
    max_future_days: int | None = None
    pattern: str | None = None
    max_length: int = 200
    description: str = ""


@dataclass(frozen=True)
class Contract:
    """The standard table of one source: ordered columns, a key, and the date that dates a row."""

    source: str
    columns: tuple[Column, ...]
    key: tuple[str, ...]
    period_column: str | None
    description: str = ""
    version: str = CONTRACT_VERSION
    rules: tuple[str, ...] = field(default=())

    @property
    def names(self) -> tuple[str, ...]:
        return tuple(c.name for c in self.columns)

    def column(self, name: str) -> Column:
        for c in self.columns:
            if c.name == name:
                return c
        raise KeyError(name)


_ID = r"[A-Za-z0-9][A-Za-z0-9._\-/]*"

STORE_ID = Column(
    "store_id",
    ColumnType.TEXT,
    pattern=_ID,
    max_length=64,
    description="retailer's store identifier, as in the store master",
)
PRODUCT_ID = Column(
    "product_id",
    ColumnType.TEXT,
    pattern=_ID,
    max_length=64,
    description="product (SKU or department) identifier",
)
WEEK_START = Column(
    "week_start",
    ColumnType.DATE,
    max_future_days=0,
    description="Monday of the ISO week the row belongs to",
)

HOLIDAY_WEEK = Column(
    "is_holiday_week",
    ColumnType.BOOL,
    required=False,
    description="the week contains a public holiday",
)

SHIPMENTS = Contract(
    source="shipments",
    description="Weekly shipments per store and product: the forecasting target.",
    columns=(
        WEEK_START,
        STORE_ID,
        PRODUCT_ID,
        Column(
            "quantity",
            ColumnType.FLOAT,
            unit="see quantity_unit",
            minimum=-1_000_000,
            maximum=10_000_000,
            description="net quantity shipped; negative when returns exceed shipments",
        ),
        Column(
            "quantity_unit",
            ColumnType.TEXT,
            allowed=("units", "usd"),
            description="units (pieces) or usd (sales value)",
        ),
        Column(
            "returned_quantity",
            ColumnType.FLOAT,
            required=False,
            unit="same as quantity",
            minimum=0,
            maximum=10_000_000,
            description="returns reported separately by the vendor, when it does",
        ),
        HOLIDAY_WEEK,
    ),
    key=("week_start", "store_id", "product_id"),
    period_column="week_start",
)

WEATHER = Contract(
    source="weather",
    description="Daily weather per location, observed history and forecasts with their issue date.",
    columns=(
        Column(
            "location_type",
            ColumnType.TEXT,
            allowed=("zip", "store"),
            description="what location_id names",
        ),
        Column("location_id", ColumnType.TEXT, pattern=_ID, max_length=64),
        Column(
            "date",
            ColumnType.DATE,
            max_future_days=16,
            description="day the values describe (future only for forecasts)",
        ),
        Column(
            "period_days",
            ColumnType.INT,
            minimum=1,
            maximum=7,
            description="1 for daily values, 7 for weekly averages ending on date",
        ),
        Column("observation", ColumnType.TEXT, allowed=("historical", "forecast")),
        Column(
            "issue_date",
            ColumnType.DATE,
            required=False,
            max_future_days=0,
            description="day a forecast was issued; empty for historical rows",
        ),
        Column("temperature_c", ColumnType.FLOAT, unit="degC", minimum=-60, maximum=60),
        Column(
            "precipitation_mm",
            ColumnType.FLOAT,
            required=False,
            unit="mm",
            minimum=0,
            maximum=500,
        ),
    ),
    key=("location_type", "location_id", "date", "observation", "issue_date"),
    period_column="date",
    rules=(
        "historical rows: date <= as_of and issue_date empty",
        "forecast rows: issue_date required, issue_date <= date <= issue_date + 16 days",
    ),
)

DEMOGRAPHICS = Contract(
    source="demographics",
    description="Shopper demographics per store id.",
    columns=(
        STORE_ID,
        Column("as_of_date", ColumnType.DATE, max_future_days=0),
        Column("population", ColumnType.INT, unit="people", minimum=0, maximum=50_000_000),
        Column(
            "median_income_usd",
            ColumnType.FLOAT,
            required=False,
            unit="usd/year",
            minimum=0,
            maximum=1_000_000,
        ),
        Column(
            "avg_household_size",
            ColumnType.FLOAT,
            required=False,
            unit="people",
            minimum=1,
            maximum=15,
        ),
        Column(
            "share_age_65_plus",
            ColumnType.FLOAT,
            required=False,
            unit="fraction",
            minimum=0,
            maximum=1,
        ),
    ),
    key=("store_id", "as_of_date"),
    period_column="as_of_date",
)

RETURNS = Contract(
    source="returns",
    description="Product returns per store, product and week.",
    columns=(
        WEEK_START,
        STORE_ID,
        PRODUCT_ID,
        Column("returned_quantity", ColumnType.FLOAT, unit="units", minimum=0, maximum=1_000_000),
        Column(
            "return_reason",
            ColumnType.TEXT,
            allowed=("damaged", "defective", "unsold", "recall", "other"),
        ),
    ),
    key=("week_start", "store_id", "product_id", "return_reason"),
    period_column="week_start",
)

EVENTS = Contract(
    source="events",
    description="Special events (holidays, promotions, markdowns, closures) per store or region.",
    columns=(
        Column("event_date", ColumnType.DATE, max_future_days=366),
        Column("scope", ColumnType.TEXT, allowed=("store", "region")),
        Column("scope_id", ColumnType.TEXT, pattern=_ID, max_length=64),
        Column(
            "event_type",
            ColumnType.TEXT,
            allowed=("holiday", "promotion", "markdown", "closure", "local_event"),
        ),
        Column("event_name", ColumnType.TEXT, max_length=120),
        Column(
            "value",
            ColumnType.FLOAT,
            required=False,
            unit="usd for markdowns, percent for promotions",
            minimum=-10_000_000,
            maximum=10_000_000,
        ),
    ),
    key=("event_date", "scope", "scope_id", "event_type", "event_name"),
    period_column="event_date",
)

STORES = Contract(
    source="stores",
    description="Store master: store id to region, format and zip code.",
    columns=(
        STORE_ID,
        Column("region", ColumnType.TEXT, pattern=_ID, max_length=64),
        Column("format", ColumnType.TEXT, allowed=("large", "small")),
        Column("zip", ColumnType.TEXT, required=False, pattern=r"[0-9]{5}"),
        Column(
            "size_sqft",
            ColumnType.INT,
            required=False,
            unit="sq ft",
            minimum=100,
            maximum=1_000_000,
        ),
    ),
    key=("store_id",),
    period_column=None,
)

HORIZON = Contract(
    source="horizon",
    description="A forecast request: the store, product and weeks a forecast is wanted for.",
    columns=(
        Column(
            "week_start",
            ColumnType.DATE,
            max_future_days=731,
            description="Monday of a week to forecast (up to two years after as-of)",
        ),
        STORE_ID,
        PRODUCT_ID,
        Column(
            "request_id",
            ColumnType.TEXT,
            required=False,
            max_length=120,
            description="the requester's own id for the row, kept so answers can be matched",
        ),
        HOLIDAY_WEEK,
    ),
    key=("week_start", "store_id", "product_id"),
    period_column="week_start",
)

CONTRACTS: dict[str, Contract] = {
    c.source: c for c in (SHIPMENTS, WEATHER, DEMOGRAPHICS, RETURNS, EVENTS, STORES, HORIZON)
}


def contract_for(source: str) -> Contract:
    """The contract of ``source``; ``KeyError`` for an unknown source."""
    return CONTRACTS[source]
