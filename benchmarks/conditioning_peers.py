"""The conditioning engine's work on a standard-layout shipments file, done by DuckDB and Polars.

``make bench-conditioning`` compares the engine with the tools a data engineer would reach for
instead. For the comparison to mean anything they do the same work the engine does for the
``shipments_standard`` mapping, as documented in docs/data-contracts.md:

* every field trimmed, the empty string a missing value;
* ``week_start`` parsed (``%Y-%m-%d``), aligned to its Monday, not before 2000-01-01 and not
  after the as-of day; ``store_id``/``product_id`` required identifiers (pattern, at most 64
  characters); ``quantity`` a finite number in −1,000,000 … 10,000,000; ``quantity_unit``
  lower-cased and one of ``units``/``usd``; ``returned_quantity`` optional, 0 … 10,000,000;
  ``is_holiday_week`` optional, one of the mapping's true/false words;
* each rejected row with its first problem in contract column order (reason code, column,
  message) and the original row, numbered as a spreadsheet numbers it (header = row 1);
* duplicate keys (week, store, product): the first occurrence kept, a later one rejected as
  ``duplicate_row`` (the same record) or ``duplicate_key``;
* the standard CSV and ``rejects.csv`` written, and the input and every output hashed
  (SHA-256), as the manifest records them.

Each returns the same accounting the engine's manifest gives (rows in, out, rejected, counts
per reason code), which the benchmark and its smoke test compare with the engine's.
"""

from __future__ import annotations

import datetime as dt
import hashlib
from collections.abc import Mapping
from pathlib import Path
from typing import Any

ID_PATTERN = r"[A-Za-z0-9][A-Za-z0-9._\-/]*"
TRUE_WORDS = ("true", "1", "yes", "y", "t")
FALSE_WORDS = ("false", "0", "no", "n", "f")
RAW = ("week_start", "store_id", "product_id", "quantity", "quantity_unit",
       "returned_quantity", "is_holiday_week")  # fmt: skip
KEY = "week_start, store_id, product_id"


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        while chunk := handle.read(1 << 20):
            digest.update(chunk)
    return digest.hexdigest()


def _accounting(path: Path, out: Path, rows_in: int, counts: Mapping[str, int]) -> dict[str, Any]:
    rejected = sum(counts.values())
    return {
        "rows_in": rows_in,
        "rows_out": rows_in - rejected,
        "rows_rejected": rejected,
        "reject_counts": dict(sorted(counts.items())),
        "sha256": {
            name: sha256_file(p)
            for name, p in (
                ("input", path),
                ("part", out / "part-00000.csv"),
                ("rejects", out / "rejects.csv"),
            )
        },
    }


# --------------------------------------------------------------------------------- DuckDB

_DUCKDB_CHECKS = f"""
CREATE TEMP TABLE checked AS
WITH raw AS (
    SELECT *, row_number() OVER () + 1 AS row_number FROM read_csv(
        $path, header = true, all_varchar = true, delim = ',', quote = '"', escape = '"',
        strict_mode = true, null_padding = false, parallel = true)
), clean AS (
    SELECT row_number,
        nullif(trim(week_start), '') AS ws, nullif(trim(store_id), '') AS store,
        nullif(trim(product_id), '') AS product, nullif(trim(quantity), '') AS q,
        lower(nullif(trim(quantity_unit), '')) AS unit,
        nullif(trim(returned_quantity), '') AS rq,
        lower(nullif(trim(is_holiday_week), '')) AS holiday,
        concat_ws(',', {", ".join(f"coalesce({c}, '')" for c in RAW)}) AS original
    FROM raw
), typed AS (
    SELECT *,
        CAST(try_strptime(ws, '%Y-%m-%d') AS DATE) AS day,
        TRY_CAST(q AS DOUBLE) AS qn, TRY_CAST(rq AS DOUBLE) AS rqn
    FROM clean
), aligned AS (
    SELECT *, CAST(day - (isodow(day) - 1) * INTERVAL 1 DAY AS DATE) AS week FROM typed
)
SELECT *,
    CASE
        WHEN ws IS NULL THEN 'missing_value|week_start|week_start is required but empty'
        WHEN day IS NULL THEN 'bad_date|week_start|week_start: ''' || ws
            || ''' is not a date in the format %Y-%m-%d'
        WHEN week < DATE '2000-01-01' THEN 'date_out_of_range|week_start|week_start: '
            || week || ' is before 2000-01-01'
        WHEN week > $as_of THEN 'future_date|week_start|week_start: ' || week
            || ' is after ' || $as_of || ' (as of ' || $as_of || ')'
        WHEN store IS NULL THEN 'missing_value|store_id|store_id is required but empty'
        WHEN length(store) > 64 THEN 'too_long|store_id|store_id: longer than 64 characters'
        WHEN NOT regexp_full_match(store, '{ID_PATTERN}') THEN 'bad_format|store_id|store_id: '''
            || store || ''' does not look like a valid identifier'
        WHEN product IS NULL THEN 'missing_value|product_id|product_id is required but empty'
        WHEN length(product) > 64 THEN 'too_long|product_id|product_id: longer than 64 characters'
        WHEN NOT regexp_full_match(product, '{ID_PATTERN}') THEN
            'bad_format|product_id|product_id: ''' || product
            || ''' does not look like a valid identifier'
        WHEN q IS NULL THEN 'missing_value|quantity|quantity is required but empty'
        WHEN qn IS NULL OR NOT isfinite(qn) THEN 'bad_number|quantity|quantity: ''' || q
            || ''' is not a number'
        WHEN qn < -1000000 OR qn > 10000000 THEN 'out_of_range|quantity|quantity: ' || qn
            || ' is outside the allowed range [-1e+06, 1e+07]'
        WHEN unit IS NULL THEN 'missing_value|quantity_unit|quantity_unit is required but empty'
        WHEN unit NOT IN ('units', 'usd') THEN 'invalid_value|quantity_unit|quantity_unit: '''
            || unit || ''' is not one of units, usd'
        WHEN rq IS NOT NULL AND (rqn IS NULL OR NOT isfinite(rqn)) THEN
            'bad_number|returned_quantity|returned_quantity: ''' || rq || ''' is not a number'
        WHEN rqn < 0 OR rqn > 10000000 THEN 'out_of_range|returned_quantity|returned_quantity: '
            || rqn || ' is outside the allowed range [0, 1e+07]'
        WHEN holiday IS NOT NULL AND holiday NOT IN {TRUE_WORDS + FALSE_WORDS} THEN
            'bad_boolean|is_holiday_week|is_holiday_week: ''' || holiday
            || ''' is not one of {", ".join(TRUE_WORDS + FALSE_WORDS)}'
    END AS problem
FROM aligned
"""  # noqa: S608 - assembled from this module's constants only

_DUCKDB_DEDUPE = f"""
CREATE TEMP TABLE accepted AS
SELECT row_number, week, store, product, qn, unit, rqn,
    CASE WHEN holiday IN {TRUE_WORDS} THEN true WHEN holiday IN {FALSE_WORDS} THEN false END
        AS is_holiday,
    first_value(row_number) OVER w AS first_row,
    row_number() OVER w AS seen,
    concat_ws('|', qn, unit, rqn, holiday) AS record,
    first_value(concat_ws('|', qn, unit, rqn, holiday)) OVER w AS first_record
FROM checked WHERE problem IS NULL
WINDOW w AS (PARTITION BY week, store, product ORDER BY row_number)
"""  # noqa: S608 - assembled from this module's constants only


def run_duckdb(path: Path, out: Path, as_of: dt.date) -> dict[str, Any]:
    """Condition ``path`` with DuckDB into ``out`` (part-00000.csv, rejects.csv)."""
    import duckdb

    out.mkdir(parents=True, exist_ok=True)
    con = duckdb.connect()
    con.execute("SET preserve_insertion_order = false")
    params = {"path": str(path), "as_of": as_of}
    con.execute(_DUCKDB_CHECKS, params)
    con.execute(_DUCKDB_DEDUPE)
    part = out / "part-00000.csv"
    con.execute(
        f"""COPY (SELECT week AS week_start, store AS store_id, product AS product_id,
                qn AS quantity, unit AS quantity_unit, rqn AS returned_quantity,
                is_holiday AS is_holiday_week
            FROM accepted WHERE seen = 1 ORDER BY row_number)
        TO '{part}' (HEADER, FORCE_QUOTE (store_id, product_id, quantity_unit))"""  # noqa: S608
    )
    rejects = out / "rejects.csv"
    con.execute(
        f"""COPY (
            SELECT row_number, split_part(problem, '|', 1) AS reason_code,
                split_part(problem, '|', 2) AS "column",
                substr(problem, length(split_part(problem, '|', 1))
                    + length(split_part(problem, '|', 2)) + 3) AS message,
                original AS original_row
            FROM checked WHERE problem IS NOT NULL
            UNION ALL
            SELECT a.row_number,
                CASE WHEN a.record = a.first_record THEN 'duplicate_row' ELSE 'duplicate_key' END,
                '{KEY}',
                CASE WHEN a.record = a.first_record THEN 'repeats row ' ELSE
                    'has the same key as row ' END || a.first_row
                    || ' ({KEY}); the first occurrence is kept',
                c.original
            FROM accepted a JOIN checked c USING (row_number) WHERE a.seen > 1
            ORDER BY row_number)
        TO '{rejects}' (HEADER, FORCE_QUOTE (reason_code, "column", message, original_row))
        """  # noqa: S608 - COPY takes no parameters; the paths are our own temporary files
    )
    rows_in = int(con.execute("SELECT count(*) FROM checked").fetchone()[0])  # type: ignore[index]
    counts = dict(
        con.execute(
            """SELECT split_part(problem, '|', 1), count(*) FROM checked
                WHERE problem IS NOT NULL GROUP BY 1
            UNION ALL
            SELECT CASE WHEN record = first_record THEN 'duplicate_row'
                ELSE 'duplicate_key' END, count(*) FROM accepted WHERE seen > 1 GROUP BY 1"""
        ).fetchall()
    )
    con.close()
    return _accounting(path, out, rows_in, counts)


# --------------------------------------------------------------------------------- Polars


def run_polars(path: Path, out: Path, as_of: dt.date) -> dict[str, Any]:
    """Condition ``path`` with Polars (lazy, streaming engine) into ``out``."""
    import polars as pl

    out.mkdir(parents=True, exist_ok=True)
    words = [*TRUE_WORDS, *FALSE_WORDS]

    def text(name: str) -> pl.Expr:
        value = pl.col(name).str.strip_chars()
        return pl.when(value == "").then(None).otherwise(value)

    raw = pl.scan_csv(path, infer_schema=False, row_index_name="row_number", row_index_offset=2)
    clean = raw.select(
        "row_number",
        text("week_start").alias("ws"), text("store_id").alias("store"),
        text("product_id").alias("product"), text("quantity").alias("q"),
        text("quantity_unit").str.to_lowercase().alias("unit"),
        text("returned_quantity").alias("rq"),
        text("is_holiday_week").str.to_lowercase().alias("holiday"),
        pl.concat_str([pl.col(c).fill_null("") for c in RAW], separator=",").alias("original"),
    )  # fmt: skip
    day = pl.col("ws").str.to_date("%Y-%m-%d", strict=False)
    typed = clean.with_columns(
        (day - pl.duration(days=day.dt.weekday() - 1)).alias("week"),
        day.alias("day"),
        pl.col("q").cast(pl.Float64, strict=False).alias("qn"),
        pl.col("rq").cast(pl.Float64, strict=False).alias("rqn"),
    )
    pattern = f"^(?:{ID_PATTERN})$"

    def problem(code: str, column: str, message: pl.Expr | str) -> pl.Expr:
        return pl.concat_str([pl.lit(f"{code}|{column}|"), pl.lit(message) if isinstance(
            message, str) else message])  # fmt: skip

    def quoted(prefix: str, column: str, suffix: str) -> pl.Expr:
        return pl.concat_str([pl.lit(prefix + "'"), pl.col(column), pl.lit("'" + suffix)])

    checks = (
        pl.when(pl.col("ws").is_null()).then(problem(
            "missing_value", "week_start", "week_start is required but empty"))
        .when(pl.col("day").is_null()).then(problem(
            "bad_date", "week_start",
            quoted("week_start: ", "ws", " is not a date in the format %Y-%m-%d")))
        .when(pl.col("week") < dt.date(2000, 1, 1)).then(problem(
            "date_out_of_range", "week_start", "week_start is before 2000-01-01"))
        .when(pl.col("week") > as_of).then(problem(
            "future_date", "week_start", pl.concat_str([
                pl.lit("week_start: "), pl.col("week").cast(pl.String),
                pl.lit(f" is after {as_of} (as of {as_of})")])))
        .when(pl.col("store").is_null()).then(problem(
            "missing_value", "store_id", "store_id is required but empty"))
        .when(pl.col("store").str.len_chars() > 64).then(problem(
            "too_long", "store_id", "store_id: longer than 64 characters"))
        .when(~pl.col("store").str.contains(pattern)).then(problem(
            "bad_format", "store_id",
            quoted("store_id: ", "store", " does not look like a valid identifier")))
        .when(pl.col("product").is_null()).then(problem(
            "missing_value", "product_id", "product_id is required but empty"))
        .when(pl.col("product").str.len_chars() > 64).then(problem(
            "too_long", "product_id", "product_id: longer than 64 characters"))
        .when(~pl.col("product").str.contains(pattern)).then(problem(
            "bad_format", "product_id",
            quoted("product_id: ", "product", " does not look like a valid identifier")))
        .when(pl.col("q").is_null()).then(problem(
            "missing_value", "quantity", "quantity is required but empty"))
        .when(pl.col("qn").is_null() | ~pl.col("qn").is_finite()).then(problem(
            "bad_number", "quantity", quoted("quantity: ", "q", " is not a number")))
        .when((pl.col("qn") < -1_000_000) | (pl.col("qn") > 10_000_000)).then(problem(
            "out_of_range", "quantity", pl.concat_str([
                pl.lit("quantity: "), pl.col("qn").cast(pl.String),
                pl.lit(" is outside the allowed range [-1e+06, 1e+07]")])))
        .when(pl.col("unit").is_null()).then(problem(
            "missing_value", "quantity_unit", "quantity_unit is required but empty"))
        .when(~pl.col("unit").is_in(["units", "usd"])).then(problem(
            "invalid_value", "quantity_unit",
            quoted("quantity_unit: ", "unit", " is not one of units, usd")))
        .when(pl.col("rq").is_not_null() & (pl.col("rqn").is_null()
                                            | ~pl.col("rqn").is_finite())).then(problem(
            "bad_number", "returned_quantity",
            quoted("returned_quantity: ", "rq", " is not a number")))
        .when((pl.col("rqn") < 0) | (pl.col("rqn") > 10_000_000)).then(problem(
            "out_of_range", "returned_quantity",
            "returned_quantity is outside the allowed range [0, 1e+07]"))
        .when(pl.col("holiday").is_not_null() & ~pl.col("holiday").is_in(words)).then(problem(
            "bad_boolean", "is_holiday_week",
            quoted("is_holiday_week: ", "holiday", f" is not one of {', '.join(words)}")))
    )  # fmt: skip
    checked = typed.with_columns(checks.alias("problem"))
    record = pl.concat_str(
        [pl.col("qn").cast(pl.String), pl.col("unit"), pl.col("rqn").cast(pl.String),
         pl.col("holiday")], separator="|", ignore_nulls=True,
    )  # fmt: skip
    key = ["week", "store", "product"]
    accepted = (
        checked.filter(pl.col("problem").is_null())
        .with_columns(record.alias("record"))
        .with_columns(
            pl.col("row_number").first().over(key).alias("first_row"),
            pl.col("record").first().over(key).alias("first_record"),
            pl.col("row_number").rank("ordinal").over(key).alias("seen"),
        )
    )
    kept = accepted.filter(pl.col("seen") == 1).sort("row_number").select(
        pl.col("week").alias("week_start"), pl.col("store").alias("store_id"),
        pl.col("product").alias("product_id"), pl.col("qn").alias("quantity"),
        pl.col("unit").alias("quantity_unit"), pl.col("rqn").alias("returned_quantity"),
        pl.when(pl.col("holiday").is_in(TRUE_WORDS)).then(True)
        .when(pl.col("holiday").is_in(FALSE_WORDS)).then(False).alias("is_holiday_week"),
    )  # fmt: skip
    kept.sink_csv(out / "part-00000.csv", quote_style="non_numeric")
    bad = checked.filter(pl.col("problem").is_not_null()).select(
        "row_number",
        pl.col("problem").str.split_exact("|", 2).struct.rename_fields(
            ["reason_code", "column", "message"]).alias("p"),
        pl.col("original").alias("original_row"),
    ).unnest("p")  # fmt: skip
    same = pl.col("record") == pl.col("first_record")
    dupes = accepted.filter(pl.col("seen") > 1).select(
        "row_number",
        pl.when(same).then(pl.lit("duplicate_row")).otherwise(pl.lit("duplicate_key"))
        .alias("reason_code"),
        pl.lit(KEY).alias("column"),
        pl.concat_str([pl.when(same).then(pl.lit("repeats row ")).otherwise(
            pl.lit("has the same key as row ")), pl.col("first_row").cast(pl.String),
            pl.lit(f" ({KEY}); the first occurrence is kept")]).alias("message"),
        pl.col("original").alias("original_row"),
    )  # fmt: skip
    rejects = pl.concat([bad, dupes]).sort("row_number")
    rejects.sink_csv(out / "rejects.csv", quote_style="non_numeric")
    counted = (
        pl.scan_csv(out / "rejects.csv", infer_schema=False)
        .group_by("reason_code").len().collect(engine="streaming")
    )  # fmt: skip
    counts = {str(r): int(n) for r, n in counted.iter_rows()}
    rows_in = int(raw.select(pl.len()).collect(engine="streaming").item())
    return _accounting(path, out, rows_in, counts)
