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
from collections.abc import Mapping
from pathlib import Path
from typing import Any

ID_PATTERN = r"[A-Za-z0-9][A-Za-z0-9._\-/]*"
TRUE_WORDS = ("true", "1", "yes", "y", "t")
FALSE_WORDS = ("false", "0", "no", "n", "f")
RAW = ("week_start", "store_id", "product_id", "quantity", "quantity_unit",
       "returned_quantity", "is_holiday_week")  # fmt: skip
KEY = "week_start, store_id, product_id"


def _accounting(path: Path, out: Path, rows_in: int, counts: Mapping[str, int]) -> dict[str, Any]:
    from conditioning.engine import sha256_file

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

# One pass over the file: the checks, and the typed record for accepted rows; the original
# row is built only for the rejected ones (CASE evaluates its branch only where it applies).
_DUCKDB_CHECKS = f"""
CREATE TEMP TABLE checked AS
WITH raw AS (
    SELECT *, row_number() OVER () + 1 AS row_number FROM read_csv(
        $path, header = true, all_varchar = true, delim = ',', quote = '"', escape = '"',
        strict_mode = true, null_padding = false, parallel = true)
), clean AS (
    SELECT *,
        nullif(trim(week_start), '') AS ws, nullif(trim(store_id), '') AS store,
        nullif(trim(product_id), '') AS product, nullif(trim(quantity), '') AS q,
        lower(nullif(trim(quantity_unit), '')) AS unit,
        nullif(trim(returned_quantity), '') AS rq,
        lower(nullif(trim(is_holiday_week), '')) AS holiday
    FROM raw
), typed AS (
    SELECT *,
        CAST(try_strptime(ws, '%Y-%m-%d') AS DATE) AS day,
        TRY_CAST(q AS DOUBLE) AS qn, TRY_CAST(rq AS DOUBLE) AS rqn
    FROM clean
), aligned AS (
    SELECT *, CAST(day - (isodow(day) - 1) * INTERVAL 1 DAY AS DATE) AS week FROM typed
), judged AS (
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
)
SELECT row_number, week, store, product, qn, unit, rqn,
    CASE WHEN holiday IN {TRUE_WORDS} THEN true WHEN holiday IN {FALSE_WORDS} THEN false END
        AS is_holiday,
    problem,
    CASE WHEN problem IS NOT NULL THEN
        concat_ws(',', {", ".join(f"coalesce({c}, '')" for c in RAW)}) END AS original
FROM judged
"""  # noqa: S608 - assembled from this module's constants only

# Keys seen more than once among accepted rows (few): where their first occurrence is.
_DUCKDB_DUPLICATES = """
CREATE TEMP TABLE dup_keys AS
SELECT week, store, product, min(row_number) AS first_row
FROM checked WHERE problem IS NULL GROUP BY ALL HAVING count(*) > 1
"""

_DUCKDB_DUPLICATE_ROWS = """
CREATE TEMP TABLE dup_rows AS
WITH involved AS (
    SELECT c.*, d.first_row,
        concat_ws(',', c.week, c.store, c.product, c.qn, c.unit, c.rqn, c.is_holiday) AS record
    FROM checked c JOIN dup_keys d USING (week, store, product) WHERE c.problem IS NULL
)
SELECT a.row_number, a.first_row, a.record,
    CASE WHEN a.record = f.record THEN 'duplicate_row' ELSE 'duplicate_key' END AS code
FROM involved a JOIN involved f ON f.row_number = a.first_row
WHERE a.row_number <> a.first_row
"""


def run_duckdb(path: Path, out: Path, as_of: dt.date) -> dict[str, Any]:
    """Condition ``path`` with DuckDB into ``out`` (part-00000.csv, rejects.csv)."""
    import duckdb

    out.mkdir(parents=True, exist_ok=True)
    con = duckdb.connect()
    con.execute(_DUCKDB_CHECKS, {"path": str(path), "as_of": as_of})
    con.execute(_DUCKDB_DUPLICATES)
    con.execute(_DUCKDB_DUPLICATE_ROWS)
    part = out / "part-00000.csv"
    con.execute(
        f"""COPY (SELECT week AS week_start, store AS store_id, product AS product_id,
                qn AS quantity, unit AS quantity_unit, rqn AS returned_quantity,
                is_holiday AS is_holiday_week
            FROM checked WHERE problem IS NULL
                AND row_number NOT IN (SELECT row_number FROM dup_rows))
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
            SELECT row_number, code, '{KEY}',
                CASE WHEN code = 'duplicate_row' THEN 'repeats row ' ELSE
                    'has the same key as row ' END || first_row
                    || ' ({KEY}); the first occurrence is kept',
                record
            FROM dup_rows
            ORDER BY row_number)
        TO '{rejects}' (HEADER, FORCE_QUOTE (reason_code, "column", message, original_row))
        """  # noqa: S608 - COPY takes no parameters; the paths are our own temporary files
    )
    rows_in = int(con.execute("SELECT count(*) FROM checked").fetchone()[0])  # type: ignore[index]
    counts = dict(
        con.execute(
            """SELECT split_part(problem, '|', 1), count(*) FROM checked
                WHERE problem IS NOT NULL GROUP BY 1
            UNION ALL SELECT code, count(*) FROM dup_rows GROUP BY 1"""
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
        "row_number", *RAW,
        text("week_start").alias("ws"), text("store_id").alias("store"),
        text("product_id").alias("product"), text("quantity").alias("q"),
        text("quantity_unit").str.to_lowercase().alias("unit"),
        text("returned_quantity").alias("rq"),
        text("is_holiday_week").str.to_lowercase().alias("holiday"),
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
    key = ["week", "store", "product"]
    accepted = checked.filter(pl.col("problem").is_null()).with_columns(
        pl.when(pl.col("holiday").is_in(TRUE_WORDS)).then(True)
        .when(pl.col("holiday").is_in(FALSE_WORDS)).then(False).alias("is_holiday")
    )  # fmt: skip
    # Keys seen more than once (few), then only their rows are compared with the first one.
    dup_keys = (
        accepted.group_by(key)
        .agg(pl.col("row_number").min().alias("first_row"), pl.len().alias("n"))
        .filter(pl.col("n") > 1)
    )
    record = pl.concat_str(
        [pl.col(c).cast(pl.String) for c in (*key, "qn", "unit", "rqn", "is_holiday")],
        separator=",", ignore_nulls=True,
    )  # fmt: skip
    involved = accepted.join(dup_keys, on=key).with_columns(record.alias("record"))
    firsts = involved.select(pl.col("row_number").alias("first_row"),
                             pl.col("record").alias("first_record"))  # fmt: skip
    same = pl.col("record") == pl.col("first_record")
    dupes = (
        involved.filter(pl.col("row_number") != pl.col("first_row"))
        .join(firsts, on="first_row")
        .select(
            "row_number",
            pl.when(same).then(pl.lit("duplicate_row")).otherwise(pl.lit("duplicate_key"))
            .alias("reason_code"),
            pl.lit(KEY).alias("column"),
            pl.concat_str([pl.when(same).then(pl.lit("repeats row ")).otherwise(
                pl.lit("has the same key as row ")), pl.col("first_row").cast(pl.String),
                pl.lit(f" ({KEY}); the first occurrence is kept")]).alias("message"),
            pl.col("record").alias("original_row"),
        )
    )  # fmt: skip
    kept = accepted.join(dupes.select("row_number"), on="row_number", how="anti").select(
        pl.col("week").alias("week_start"), pl.col("store").alias("store_id"),
        pl.col("product").alias("product_id"), pl.col("qn").alias("quantity"),
        pl.col("unit").alias("quantity_unit"), pl.col("rqn").alias("returned_quantity"),
        pl.col("is_holiday").alias("is_holiday_week"),
    )  # fmt: skip
    bad = checked.filter(pl.col("problem").is_not_null()).select(
        "row_number",
        pl.col("problem").str.split_exact("|", 2).struct.rename_fields(
            ["reason_code", "column", "message"]).alias("p"),
        pl.concat_str([pl.col(c).fill_null("") for c in RAW], separator=",")
        .alias("original_row"),
    ).unnest("p")  # fmt: skip
    rejects = pl.concat([bad, dupes]).sort("row_number")
    # One plan for every output, so the file is read and checked once (common subplans).
    _, _, rejected, counted = pl.collect_all(
        [
            kept.sink_csv(out / "part-00000.csv", quote_style="non_numeric", lazy=True),
            rejects.sink_csv(out / "rejects.csv", quote_style="non_numeric", lazy=True),
            rejects.group_by("reason_code").len(),
            checked.select(pl.len()),
        ],
        engine="streaming",
    )
    counts = {str(r): int(n) for r, n in rejected.iter_rows()}
    return _accounting(path, out, int(counted.item()), counts)
