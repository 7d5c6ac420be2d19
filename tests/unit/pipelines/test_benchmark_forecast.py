"""The forecast benchmark's command line on small files in the Walmart competition's layout
(the real files live in ../shared/data and are only read by ``make bench-forecast``): the
smoke test of ``make bench-forecast`` at a small size, checking everything but time."""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from benchmarks import forecast as bench
from pipelines.src.forecasting.models import TrainConfig

LAST_LINE = re.compile(
    r"^overall ensemble_mape=(\d+\.\d{3}) historical_avg_mape=(\d+\.\d{3}) "
    r"seasonal_naive_mape=(\d+\.\d{3}) seasonal_growth_mape=(\d+\.\d{3}) "
    r"ensemble_wape=(\d+\.\d{3}) seasonal_naive_wape=(\d+\.\d{3})$"
)


@pytest.fixture(scope="module")
def walmart_like(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Four stores (types A, A, B, C), four departments, 90 Fridays; markdowns only late."""
    folder = tmp_path_factory.mktemp("walmart")
    rng = np.random.default_rng(3)
    fridays = pd.date_range("2010-02-05", periods=90, freq="7D")
    season = 1 + 0.4 * np.sin(2 * np.pi * fridays.day_of_year.to_numpy() / 365.25)
    holiday = fridays.month.isin([11, 12]) & (fridays.day >= 20)
    rows = []
    for store, kind in zip((1, 2, 3, 4), "AABC", strict=True):
        for dept, level in zip((1, 2, 3, 4), (20_000, 9_000, 900, 300), strict=True):
            sales = level * (1.5 if kind == "A" else 1.0) * season * np.where(holiday, 1.6, 1.0)
            sales = sales * rng.lognormal(0, 0.08, len(fridays))
            rows += [
                (store, dept, d.strftime("%Y-%m-%d"), round(v, 2), "TRUE" if h else "FALSE")
                for d, v, h in zip(fridays, sales, holiday, strict=True)
            ]
    pd.DataFrame(rows, columns=["Store", "Dept", "Date", "Weekly_Sales", "IsHoliday"]).to_csv(
        folder / "train.csv", index=False
    )
    pd.DataFrame(
        {"Store": [1, 2, 3, 4], "Type": list("AABC"), "Size": [200_000, 180_000, 90_000, 40_000]}
    ).to_csv(folder / "stores.csv", index=False)
    feats = []
    for store in (1, 2, 3, 4):
        for d, h in zip(fridays, holiday, strict=True):
            markdown = "NA" if d < fridays[70] else f"{rng.uniform(1_000, 40_000):.2f}"
            feats.append(
                [store, d.strftime("%Y-%m-%d"), f"{rng.normal(60, 15):.1f}", "3.10",
                 *[markdown] * 5, "211.1", "8.1", "TRUE" if h else "FALSE"]
            )  # fmt: skip
    columns = ["Store", "Date", "Temperature", "Fuel_Price"]
    columns += [f"MarkDown{i}" for i in range(1, 6)] + ["CPI", "Unemployment", "IsHoliday"]
    pd.DataFrame(feats, columns=columns).to_csv(folder / "features.csv", index=False)
    return folder


def test_one_window_ends_with_the_six_figures(
    walmart_like: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    end = "2011-09-30"
    assert (
        bench.main(["--data", str(walmart_like), "--holdout-end", end, "--holdout-weeks", "8"]) == 0
    )
    out = capsys.readouterr().out
    lines = out.strip().splitlines()
    match = LAST_LINE.match(lines[-1])
    assert match, lines[-1]
    figures = [float(v) for v in match.groups()]
    assert all(0 < v < 5 for v in figures)
    # 16 series x 8 weeks, forecast from the week ending 2011-08-05
    assert "holdout 2011-08-05 + 8 weeks (to 2011-09-30): 128 rows" in out
    for method in ("historical_avg", "seasonal_naive", "seasonal_growth", "direct", "ensemble"):
        assert re.search(rf"^overall\s+{method}\s", out, re.M), method


def test_rolling_origins_print_every_horizon_that_fits(
    walmart_like: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    argv = ["--data", str(walmart_like), "--origins", "3", "--step-weeks", "4"]
    assert bench.main([*argv, "--horizons", "4,8"]) == 0
    out = capsys.readouterr().out
    assert "3 origins 4 weeks apart" in out
    sections = ("per origin and horizon", "over origins", "slow movers", "wall time per origin",
                "what the direct model leans on", "goals")  # fmt: skip
    for section in sections:
        assert f"\n{section}" in out, section
    cells = re.findall(r"^(\d{4}-\d\d-\d\d)\s+(\d+)w\s+ensemble\s", out, re.M)
    # the latest origin's 8 weeks would end after the data: only its 4 weeks are scored
    assert cells == [("2011-07-29", "4"), ("2011-08-26", "4"), ("2011-09-23", "4"),
                     ("2011-07-29", "8"), ("2011-08-26", "8")]  # fmt: skip
    assert re.search(r"^median\s+4w\s+ensemble\s", out, re.M)
    assert re.search(r"^worst\s+8w\s+seasonal_naive\s", out, re.M)
    assert len(re.findall(r"^  \[(yes|NO )\] ", out, re.M)) == 5
    examples = [int(n.replace(",", "")) for n in re.findall(r"on ([\d,]+) examples", out)]
    assert len(examples) == 3 and all(0 < n <= TrainConfig().max_examples for n in examples)


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--holdout-end", "last friday"], "is not a date"),
        (["--holdout-end", "2010-06-04"], "less than a year of history"),
    ],
)
def test_bad_windows_get_one_clear_line(
    walmart_like: Path, capsys: pytest.CaptureFixture[str], argv: list[str], message: str
) -> None:
    assert bench.main(["--data", str(walmart_like), *argv]) == 2
    assert message in capsys.readouterr().out


def test_bad_counts_are_refused(walmart_like: Path) -> None:
    with pytest.raises(SystemExit):
        bench.main(["--data", str(walmart_like), "--origins", "0"])


def test_without_the_data_it_says_so_and_skips(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert bench.main(["--data", str(tmp_path / "absent")]) == 0
    assert "skipped: Walmart data not found" in capsys.readouterr().out
