"""Deterministic synthetic raw drops: realistic vendor files with a controllable share of defects.

The same ``SyntheticSpec`` (seed included) always gives byte-identical files, so tests can assert
exact outcomes, benchmarks can regenerate inputs instead of storing them, and the demo has data.

The world: ``regions`` regions, each with large and small stores (zip codes, sizes), products
that are fast or slow movers, weekly shipments with seasonality, daily weather per zip (history
and a 7-day forecast), demographics per store, returns and special events. Each source can be
written in several vendor layouts and encodings (see ``conditioning/mappings``).

Defects are injected into shipments at ``defect_rate``; ``Drop.defects`` counts them by the
reason code the conditioning engine must report, so a test can check every one was caught.
"""

from __future__ import annotations

import datetime as dt
import gzip
import io
import json
import random
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO

import numpy as np
import pyarrow as pa
import pyarrow.csv as pacsv
import pyarrow.parquet as pq

DEFECT_KINDS = (
    "out_of_range",
    "bad_date",
    "missing_value",
    "future_date",
    "bad_number",
    "duplicate_row",
)
SHIPMENT_LAYOUTS = ("standard", "vendor_eu", "vendor_us")


@dataclass(frozen=True)
class SyntheticSpec:
    regions: int = 3
    stores_per_region: int = 4
    products: int = 12
    weeks: int = 4
    first_week: dt.date = dt.date(2024, 1, 1)
    seed: int = 7
    defect_rate: float = 0.0


@dataclass(frozen=True)
class Store:
    store_id: str
    region: str
    format: str
    zip: str
    size_sqft: int


@dataclass
class Drop:
    """Files written for one drop, by source, and the defects injected (by reason code)."""

    files: dict[str, list[Path]] = field(default_factory=dict)
    rows: Counter[str] = field(default_factory=Counter)
    defects: Counter[str] = field(default_factory=Counter)


def stores(spec: SyntheticSpec) -> list[Store]:
    rng = random.Random(spec.seed)  # noqa: S311 - reproducible test data
    out = []
    for r in range(spec.regions):
        for s in range(spec.stores_per_region):
            number = r * spec.stores_per_region + s + 1
            large = s % 2 == 0
            out.append(
                Store(
                    store_id=f"S{number:04d}",
                    region=f"R{r + 1:02d}",
                    format="large" if large else "small",
                    zip=f"{10000 + r * 1000 + rng.randrange(1000):05d}",
                    size_sqft=rng.randrange(120_000, 220_000)
                    if large
                    else rng.randrange(20_000, 60_000),
                )
            )
    return out


def products(spec: SyntheticSpec) -> list[tuple[str, str]]:
    """(product id, velocity) pairs: every third product is a fast mover."""
    return [(f"P{i + 1:06d}", "fast" if i % 3 == 0 else "slow") for i in range(spec.products)]


def _week(spec: SyntheticSpec, w: int) -> dt.date:
    return spec.first_week + dt.timedelta(weeks=w)


def shipment_records(spec: SyntheticSpec) -> Iterator[dict[str, object]]:
    """Clean standard shipment records (week, store, product order).

    Demand has the structure forecasting models are meant to find and a historical average
    misses: a level per product and per store, a yearly season, a slow trend and a holiday
    lift, with Poisson noise on top.
    """
    rng = np.random.default_rng(spec.seed)
    all_stores, all_products = stores(spec), products(spec)
    level = {
        pid: float(rng.lognormal(np.log(30.0 if velocity == "fast" else 6.0), 0.4))
        for pid, velocity in all_products
    }
    store_factor = {
        st.store_id: float(rng.uniform(0.8, 1.2)) * (1.6 if st.format == "large" else 0.7)
        for st in all_stores
    }
    for w in range(spec.weeks):
        week = _week(spec, w)
        season = 1.0 + 0.45 * np.sin(2 * np.pi * week.timetuple().tm_yday / 365.0)
        holiday = week.month == 12 and week.day >= 18
        trend = 1.0 + 0.004 * w
        for st in all_stores:
            for pid, _velocity in all_products:
                mean = level[pid] * store_factor[st.store_id] * season * trend
                qty = int(rng.poisson(mean * (1.5 if holiday else 1.0)))
                returned = int(rng.binomial(qty, 0.04)) if qty else 0
                yield {
                    "week_start": week.isoformat(),
                    "store_id": st.store_id,
                    "product_id": pid,
                    "quantity": qty,
                    "quantity_unit": "units",
                    "returned_quantity": returned,
                    "is_holiday_week": "true" if holiday else "false",
                }


def _with_defects(
    spec: SyntheticSpec, records: Iterator[dict[str, object]], defects: Counter[str]
) -> Iterator[dict[str, object]]:
    rng = random.Random(spec.seed * 7919 + 1)  # noqa: S311 - reproducible test data
    previous: dict[str, object] | None = None
    for rec in records:
        if spec.defect_rate and previous is not None and rng.random() < spec.defect_rate:
            kind = DEFECT_KINDS[rng.randrange(len(DEFECT_KINDS))]
            defects[kind] += 1
            if kind == "duplicate_row":
                yield dict(previous)
            else:
                bad = dict(rec)
                if kind == "out_of_range":
                    bad["quantity"] = 99_999_999
                elif kind == "bad_date":
                    bad["week_start"] = "2024-13-45"
                elif kind == "missing_value":
                    bad["store_id"] = ""
                elif kind == "future_date":
                    bad["week_start"] = "2099-01-05"
                else:
                    bad["quantity"] = "12x"
                yield bad
                # The clean record still arrives, so every key stays present exactly once.
            previous = rec
            yield rec
            continue
        previous = rec
        yield rec


def _eu_date(iso: str) -> str:
    if len(iso) != 10 or iso[4] != "-":
        return iso
    y, m, d = iso.split("-")
    return f"{d}.{m}.{y}"


def _eu_number(value: object) -> str:
    if not isinstance(value, int):
        return str(value)
    return f"{value:,}".replace(",", ".")


def _open_text(path: Path, encoding: str, newline: str | None = None) -> IO[str]:
    if path.suffix != ".gz":
        return path.open("w", encoding=encoding, newline=newline)
    # mtime=0 keeps the gzip header, and so the whole file, deterministic.
    raw = gzip.GzipFile(filename=str(path), mode="wb", mtime=0)
    return io.TextIOWrapper(raw, encoding=encoding, newline=newline)


def write_shipments(path: Path, spec: SyntheticSpec, layout: str = "standard") -> Drop:
    """Write one shipments drop in ``layout`` (see ``SHIPMENT_LAYOUTS``); ``.gz`` compresses."""
    drop = Drop()
    records = _with_defects(spec, shipment_records(spec), drop.defects)

    rows = 0
    if layout == "standard":
        with _open_text(path, "utf-8", "") as fh:
            cols = list(next(shipment_records(spec)).keys())
            fh.write(",".join(cols) + "\n")
            for rec in records:
                fh.write(",".join(str(rec[c]) for c in cols) + "\n")
                rows += 1
    elif layout == "vendor_eu":
        with _open_text(path, "cp1252", "") as fh:
            fh.write("Woche;Filiale;Artikel;Menge;Retouren;Bemerkung\r\n")
            for rec in records:
                article = str(rec["product_id"]).lstrip("P").lstrip("0") or "0"
                note = "Ware geprüft – ok" if rows % 5 == 0 else ""
                fields = [
                    _eu_date(str(rec["week_start"])),
                    str(rec["store_id"]),
                    article,
                    _eu_number(rec["quantity"]),
                    _eu_number(rec["returned_quantity"]),
                    note,
                ]
                fh.write(";".join(fields) + "\r\n")
                rows += 1
    elif layout == "vendor_us":
        rng = random.Random(spec.seed)  # noqa: S311 - reproducible test data
        with _open_text(path, "utf-8") as fh:
            for rec in records:
                week = str(rec["week_start"])
                try:
                    day = dt.date.fromisoformat(week) + dt.timedelta(days=rng.randrange(7))
                    ship_date = day.strftime("%m/%d/%Y")
                except ValueError:
                    ship_date = week
                qty = rec["quantity"]
                store = str(rec["store_id"])
                obj = {
                    "ship_date": ship_date,
                    "store_nbr": int(store[1:]) if store else None,
                    "item_nbr": int(str(rec["product_id"])[1:]),
                    "cases": qty / 12 if isinstance(qty, int) else qty,
                    "holiday": "Y" if rec["is_holiday_week"] == "true" else "N",
                }
                fh.write(json.dumps(obj) + "\n")
                rows += 1
    else:
        raise ValueError(f"unknown shipments layout {layout!r}; use one of {SHIPMENT_LAYOUTS}")
    drop.files["shipments"] = [path]
    drop.rows["shipments"] = rows
    return drop


def write_stores(path: Path, spec: SyntheticSpec) -> None:
    with path.open("w", encoding="utf-8", newline="") as fh:
        fh.write("store_id,region,format,zip,size_sqft\n")
        for s in stores(spec):
            fh.write(f"{s.store_id},{s.region},{s.format},{s.zip},{s.size_sqft}\n")


def write_weather(path: Path, spec: SyntheticSpec, layout: str = "standard") -> int:
    """Daily history for every zip over the spec's weeks plus a 7-day forecast issued on the
    last day. ``vendor_us`` is tab-separated, Fahrenheit/inches, month-first dates."""
    rng = np.random.default_rng(spec.seed + 1)
    zips = sorted({s.zip for s in stores(spec)})
    last = _week(spec, spec.weeks) - dt.timedelta(days=1)
    rows: list[tuple[str, dt.date, str, dt.date | None, float, float]] = []
    for z in zips:
        day = spec.first_week
        while day <= last:
            t = 8 + 12 * np.sin(2 * np.pi * (day.timetuple().tm_yday - 100) / 365.0)
            rows.append(
                (z, day, "historical", None, float(t + rng.normal(0, 2)), float(rng.gamma(0.6, 3)))
            )
            day += dt.timedelta(days=1)
        for ahead in range(1, 8):
            day = last + dt.timedelta(days=ahead)
            rows.append(
                (z, day, "forecast", last, float(8 + rng.normal(0, 4)), float(rng.gamma(0.6, 3)))
            )
    if layout == "standard":
        with path.open("w", encoding="utf-8", newline="") as fh:
            fh.write(
                "location_type,location_id,date,period_days,observation,issue_date,"
                "temperature_c,precipitation_mm\n"
            )
            for z, day, kind, issued, t, p in rows:
                fh.write(
                    f"zip,{z},{day.isoformat()},1,{kind},{issued.isoformat() if issued else ''},"
                    f"{t:.1f},{p:.1f}\n"
                )
    else:
        with path.open("w", encoding="utf-8", newline="") as fh:
            fh.write("ZIP\tDATE\tKIND\tISSUED\tTEMP_F\tPRCP_IN\n")
            for z, day, kind, issued, t, p in rows:
                us = day.strftime("%m/%d/%Y")
                iss = issued.strftime("%m/%d/%Y") if issued else ""
                fh.write(
                    f"{z}\t{us}\t{kind[0].upper()}\t{iss}\t{t * 9 / 5 + 32:.1f}\t{p / 25.4:.2f}\n"
                )
    return len(rows)


def write_demographics_xlsx(path: Path, spec: SyntheticSpec) -> int:
    import openpyxl

    rng = random.Random(spec.seed + 2)  # noqa: S311 - reproducible test data
    book = openpyxl.Workbook(write_only=True)
    sheet = book.create_sheet("Demographics")
    sheet.append(
        [
            "Store ID",
            "Survey Date",
            "Population",
            "Median Income (USD)",
            "Household Size",
            "Age 65+ (%)",
        ]
    )
    count = 0
    for s in stores(spec):
        sheet.append(
            [
                s.store_id,
                dt.datetime.combine(spec.first_week, dt.time()),
                rng.randrange(20_000, 400_000),
                round(rng.uniform(35_000, 120_000), 2),
                round(rng.uniform(1.8, 3.4), 2),
                round(rng.uniform(8, 28), 1),
            ]
        )
        count += 1
    book.save(path)
    return count


def write_returns_parquet(path: Path, spec: SyntheticSpec) -> int:
    rng = random.Random(spec.seed + 3)  # noqa: S311 - reproducible test data
    reasons = ("damaged", "defective", "unsold", "recall", "other")
    cols: dict[str, list[object]] = {
        "week_start": [],
        "store_id": [],
        "product_id": [],
        "returned_quantity": [],
        "return_reason": [],
    }
    for w in range(spec.weeks):
        for s in stores(spec):
            for pid, _ in products(spec)[::3]:
                cols["week_start"].append(_week(spec, w))
                cols["store_id"].append(s.store_id)
                cols["product_id"].append(pid)
                cols["returned_quantity"].append(float(rng.randrange(0, 6)))
                cols["return_reason"].append(reasons[rng.randrange(len(reasons))])
    pq.write_table(pa.table(cols), path)
    return len(cols["week_start"])


def write_events_jsonl(path: Path, spec: SyntheticSpec) -> int:
    regions = sorted({s.region for s in stores(spec)})
    count = 0
    with path.open("w", encoding="utf-8") as fh:
        for w in range(spec.weeks):
            week = _week(spec, w)
            for i, region in enumerate(regions):
                if (w + i) % 2 == 0:
                    fh.write(
                        json.dumps(
                            {
                                "event_date": (week + dt.timedelta(days=5)).isoformat(),
                                "scope": "region",
                                "scope_id": region,
                                "event_type": "promotion",
                                "event_name": f"Week {w + 1} flyer",
                                "value": 10 + 5 * (w % 3),
                            }
                        )
                        + "\n"
                    )
                    count += 1
    return count


def write_drop(directory: Path, spec: SyntheticSpec) -> Drop:
    """A full drop for every source, shipments in each vendor layout (one gzip, one CP1252)."""
    directory.mkdir(parents=True, exist_ok=True)
    drop = Drop()
    for layout, name in (
        ("standard", "shipments_standard.csv.gz"),
        ("vendor_eu", "shipments_vendor_eu.csv"),
        ("vendor_us", "shipments_vendor_us.jsonl"),
    ):
        part = write_shipments(directory / name, spec, layout)
        drop.files.setdefault("shipments", []).extend(part.files["shipments"])
        drop.rows[name] = part.rows["shipments"]
        drop.defects.update(part.defects)
    write_stores(directory / "stores.csv", spec)
    drop.files["stores"] = [directory / "stores.csv"]
    drop.rows["stores.csv"] = len(stores(spec))
    for layout, name in (("standard", "weather.csv"), ("vendor_us", "weather_vendor_us.tsv")):
        drop.rows[name] = write_weather(directory / name, spec, layout)
        drop.files.setdefault("weather", []).append(directory / name)
    drop.rows["demographics.xlsx"] = write_demographics_xlsx(directory / "demographics.xlsx", spec)
    drop.files["demographics"] = [directory / "demographics.xlsx"]
    drop.rows["returns.parquet"] = write_returns_parquet(directory / "returns.parquet", spec)
    drop.files["returns"] = [directory / "returns.parquet"]
    drop.rows["events.jsonl"] = write_events_jsonl(directory / "events.jsonl", spec)
    drop.files["events"] = [directory / "events.jsonl"]
    return drop


def write_large_shipments(
    path: Path, target_bytes: int, seed: int = 7, defect_rate: float = 0.0
) -> int:
    """A standard-layout shipments CSV of about ``target_bytes``, generated vectorised (for
    benchmarks). Keys are unique by construction; defects, when asked for, are bad quantities
    (``out_of_range``) so that the benchmark exercises the reject path. Returns the row count."""
    rng = np.random.default_rng(seed)
    n_stores, n_products = 1400, 160
    per_week = n_stores * n_products
    chunk = 200_000
    first = np.datetime64("2022-01-03")
    written = 0
    start = 0
    with path.open("wb") as fh:
        while written < target_bytes:
            if written:
                # Shrink the last chunk so the file lands near the target size.
                per_row = written / start
                chunk = int(min(chunk, max(1, (target_bytes - written) / per_row)))
            idx = np.arange(start, start + chunk, dtype=np.int64)
            week = first + (idx // per_week).astype("timedelta64[D]") * 7
            store = (idx // n_products) % n_stores + 1
            product = idx % n_products + 1
            qty = rng.poisson(12, size=chunk).astype(np.int64)
            if defect_rate:
                qty = np.where(rng.random(chunk) < defect_rate, 99_999_999, qty)
            returned = rng.binomial(qty.clip(0, 1000), 0.03)
            table = pa.table(
                {
                    "week_start": pa.array(week.astype("datetime64[D]")).cast(pa.string()),
                    "store_id": pa.array(np.char.add("S", np.char.zfill(store.astype(str), 4))),
                    "product_id": pa.array(np.char.add("P", np.char.zfill(product.astype(str), 6))),
                    "quantity": pa.array(qty),
                    "quantity_unit": pa.array(np.full(chunk, "units")),
                    "returned_quantity": pa.array(returned),
                    "is_holiday_week": pa.array(np.zeros(chunk, dtype=bool)).cast(pa.string()),
                }
            )
            buf = pa.BufferOutputStream()
            pacsv.write_csv(
                table,
                buf,
                write_options=pacsv.WriteOptions(
                    include_header=start == 0, quoting_style="none", quoting_header="none"
                ),
            )
            data = buf.getvalue().to_pybytes()
            fh.write(data)
            written += len(data)
            start += chunk
    return start
