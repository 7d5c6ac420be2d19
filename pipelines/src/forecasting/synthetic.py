"""A small deterministic generator of standard conditioned inputs, for tests and demos.

Weekly shipments with a yearly season, store and product levels, temperature sensitivity,
event uplift and noise; a store master with regions and formats; daily weather per zip;
events per store or region. The same seed gives byte-identical files.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd


@dataclass(frozen=True)
class SyntheticSpec:
    regions: tuple[str, ...] = ("north", "south")
    stores_per_format: int = 2
    products: int = 6
    weeks: int = 110
    start: str = "2022-01-03"  # a Monday
    seed: int = 7


def generate(spec: SyntheticSpec = SyntheticSpec()) -> dict[str, pd.DataFrame]:
    """Tables ``shipments``, ``stores``, ``weather`` and ``events`` in the standard columns."""
    rng = np.random.default_rng(spec.seed)
    stores = []
    n = 0
    for r, region in enumerate(spec.regions):
        for fmt in ("large", "small"):
            for _ in range(spec.stores_per_format):
                n += 1
                stores.append(
                    {
                        "store_id": f"S{n:03d}",
                        "region": region,
                        "format": fmt,
                        "zip": f"{10000 + r * 100 + n}",
                    }
                )
    store_df = pd.DataFrame(stores)
    weeks = pd.date_range(spec.start, periods=spec.weeks, freq="7D")
    days = pd.date_range(spec.start, periods=spec.weeks * 7, freq="D")
    weather_rows = []
    for zip_code in store_df["zip"]:
        base = 12 + rng.normal(0, 1)
        season = 10 * np.sin(2 * np.pi * (days.day_of_year.to_numpy() - 110) / 365.25)
        temps = base + season + rng.normal(0, 2, len(days))
        rain = np.clip(rng.gamma(0.6, 3.0, len(days)) - 1.0, 0, None)
        weather_rows.append(
            pd.DataFrame(
                {
                    "zip": zip_code,
                    "date": days.strftime("%Y-%m-%d"),
                    "temperature": temps.round(2),
                    "precipitation": rain.round(2),
                }
            )
        )
    weather = pd.concat(weather_rows, ignore_index=True)
    event_weeks = weeks[rng.choice(len(weeks), size=max(2, spec.weeks // 12), replace=False)]
    events = pd.DataFrame(
        {
            "date": [(w + pd.Timedelta(days=2)).strftime("%Y-%m-%d") for w in event_weeks],
            "store_id": ["" for _ in event_weeks],
            "region": [spec.regions[i % len(spec.regions)] for i in range(len(event_weeks))],
            "event": ["promotion" for _ in event_weeks],
        }
    )
    product_level = rng.lognormal(mean=3.0, sigma=1.0, size=spec.products)
    product_temp = rng.normal(0, 0.02, size=spec.products)
    rows = []
    woy = weeks.isocalendar().week.to_numpy().astype(float)
    season = 1 + 0.3 * np.sin(2 * np.pi * (woy - 10) / 52.0)
    for s in stores:
        store_level = (1.6 if s["format"] == "large" else 0.8) * rng.uniform(0.8, 1.2)
        zip_days = weather[weather["zip"] == s["zip"]]["temperature"].to_numpy()
        weekly_temp = zip_days[: spec.weeks * 7].reshape(spec.weeks, 7).mean(axis=1)
        region_events = set(events[events["region"] == s["region"]]["date"])
        uplift = np.array(
            [
                1.4 if (w + pd.Timedelta(days=2)).strftime("%Y-%m-%d") in region_events else 1.0
                for w in weeks
            ]
        )
        for p in range(spec.products):
            mean = (
                product_level[p]
                * store_level
                * season
                * uplift
                * (1 + product_temp[p] * (weekly_temp - 12))
            )
            qty = rng.poisson(np.clip(mean, 0, None))
            rows.append(
                pd.DataFrame(
                    {
                        "store_id": s["store_id"],
                        "product_id": f"P{p:03d}",
                        "week_start": weeks.strftime("%Y-%m-%d"),
                        "quantity": qty,
                    }
                )
            )
    shipments = pd.concat(rows, ignore_index=True)
    return {"shipments": shipments, "stores": store_df, "weather": weather, "events": events}


def write(folder: str | Path, spec: SyntheticSpec = SyntheticSpec()) -> dict[str, Path]:
    """Write each table as ``folder/<table>/part-0000.csv``; return the table folders."""
    root = Path(folder)
    paths: dict[str, Path] = {}
    for name, frame in generate(spec).items():
        target = root / name
        target.mkdir(parents=True, exist_ok=True)
        frame.to_csv(target / "part-0000.csv", index=False)
        paths[name] = target
    return paths


if __name__ == "__main__":
    import sys

    for table, folder in write(sys.argv[1] if len(sys.argv) > 1 else "demo-data").items():
        print(f"{table}: {folder}")
