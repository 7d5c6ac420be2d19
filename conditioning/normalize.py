"""Vectorised normalisation: one ``RawBatch`` + a mapping -> standard records and rejects.

Every check works on whole Arrow arrays; Python only touches the rows that are rejected (to
write their messages). A raw row is either accepted — and then contributes every record its
mapping emits for it — or rejected with the first problem found, in contract column order.
"""

from __future__ import annotations

import datetime as dt
import functools
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from conditioning.contracts import Column, ColumnType, Contract
from conditioning.mapping import ColumnRule, Condition, SourceMapping

MIN_DATE = dt.date(2000, 1, 1)
FORMULA_PATTERN = r"^[=+\-@\t\r]"
_FLOAT_RE = r"^[+-]?([0-9]+\.?[0-9]*|\.[0-9]+)([eE][+-]?[0-9]+)?$"
_INT_RE = r"^[+-]?[0-9]+$"


@dataclass
class Rejects:
    """Rejected rows of one batch, aligned lists (small: built in Python)."""

    row_numbers: list[int] = field(default_factory=list)
    codes: list[str] = field(default_factory=list)
    columns: list[str] = field(default_factory=list)
    messages: list[str] = field(default_factory=list)
    originals: list[str] = field(default_factory=list)

    def add(self, row: int, code: str, column: str, message: str, original: str) -> None:
        self.row_numbers.append(row)
        self.codes.append(code)
        self.columns.append(column)
        self.messages.append(message)
        self.originals.append(original)

    def __len__(self) -> int:
        return len(self.row_numbers)


# A column converted once per distinct value: (converted distinct values, each record's index
# into them). Lets later steps (key hashing) work per distinct value too.
Encoding = tuple[pa.Array, np.ndarray[Any, Any]]


@dataclass
class Normalized:
    """Standard records of one batch (contract column order) and the batch's rejects.

    ``encodings`` holds, for columns converted per distinct value, that conversion aligned
    with the records of ``table`` (empty when a mapping emits several records per row).
    """

    table: pa.Table
    record_rows: np.ndarray[Any, Any]
    rows_accepted: int
    rejects: Rejects
    encodings: dict[str, Encoding] = field(default_factory=dict)


@dataclass
class _Failure:
    """Rows failing one check. ``values[index[i]]`` (or ``values[i]``) is row i's bad value."""

    mask: np.ndarray[Any, Any]
    code: str
    column: str
    message: Callable[[Any], str]
    values: pa.Array | None
    index: np.ndarray[Any, Any] | None = None

    def value(self, row: int) -> Any:
        if self.values is None:
            return None
        at = int(self.index[row]) if self.index is not None else row
        return self.values[at].as_py()


def neutralise_formulas(values: pa.Array) -> pa.Array:
    """Prefix text that a spreadsheet would run as a formula with an apostrophe."""
    risky = pc.match_substring_regex(values, FORMULA_PATTERN)
    if not pc.any(risky).as_py():
        return values
    return pc.if_else(risky, pc.binary_join_element_wise("'", values, ""), values)


def csv_line(values: list[str | None]) -> str:
    """One CSV record (comma, RFC 4180 quoting) from field values."""
    out = []
    for v in values:
        s = "" if v is None else v
        if any(ch in s for ch in ',"\n\r'):
            s = '"' + s.replace('"', '""') + '"'
        out.append(s)
    return ",".join(out)


def _bool_np(arr: pa.Array | pa.ChunkedArray) -> np.ndarray[Any, Any]:
    filled = pc.fill_null(arr, False)
    return np.asarray(filled.to_numpy(zero_copy_only=False), dtype=bool)


@functools.lru_cache(maxsize=64)
def _null_set(null_values: tuple[str, ...]) -> pa.Array:
    """The raw values that mean "missing" (always including the empty string)."""
    return pa.array(sorted({*null_values, ""}), type=pa.string())


class _BatchContext:
    def __init__(self, table: pa.Table, mapping: SourceMapping, as_of: dt.date) -> None:
        self.n = table.num_rows
        self.as_of = as_of
        self.mapping = mapping
        self._raw = table
        self._lookup = {name.strip().lower(): name for name in table.column_names}
        self._untrimmed: dict[str, pa.Array] = {}
        self._clean: dict[str, pa.Array] = {}
        self._nulls = _null_set(mapping.read.null_values)

    def untrimmed(self, column: str) -> pa.Array:
        key = column.lower()
        if key not in self._untrimmed:
            self._untrimmed[key] = self._raw.column(self._lookup[key]).combine_chunks()
        return self._untrimmed[key]

    def raw(self, column: str) -> pa.Array:
        """A raw column, trimmed, with null markers (``NA``, empty, …) as nulls."""
        key = column.lower()
        if key not in self._clean:
            values = pc.utf8_trim_whitespace(self.untrimmed(column))
            is_null = pc.is_in(values, value_set=self._nulls)
            if pc.any(is_null).as_py():
                values = pc.if_else(is_null, None, values)
            self._clean[key] = values
        return self._clean[key]


def _source_values(rule: ColumnRule, ctx: _BatchContext) -> pa.Array:
    if rule.source_column is not None:
        values = ctx.raw(rule.source_column)
    elif rule.concat:
        pieces: list[Any] = []
        for part in rule.concat:
            if part.column is not None:
                col = ctx.raw(part.column)
                pieces.append(pc.utf8_lpad(col, width=part.pad, padding="0") if part.pad else col)
            else:
                pieces.append(pa.scalar(part.literal, pa.string()))
        values = pc.binary_join_element_wise(*pieces, "")
        if not isinstance(values, pa.Array):
            values = pa.array([values.as_py()] * ctx.n, pa.string())
    elif rule.const is not None:
        values = pc.fill_null(pa.nulls(ctx.n, pa.string()), rule.const)
    else:
        values = pa.nulls(ctx.n, pa.string())
    if rule.default is not None:
        values = pc.fill_null(values, rule.default)
    return values


class _Checks:
    """Collects failures of one column."""

    def __init__(self, name: str, failures: list[_Failure]) -> None:
        self.name = name
        self.failures = failures

    def fail(
        self,
        mask: Any,
        code: str,
        message: Callable[[Any], str],
        values: pa.Array | None,
    ) -> None:
        m = mask if isinstance(mask, np.ndarray) else _bool_np(mask)
        if m.any():
            self.failures.append(_Failure(m, code, self.name, message, values))


def _convert_text(column: Column, rule: ColumnRule, text: pa.Array, checks: _Checks) -> pa.Array:
    name = column.name
    values = text
    if rule.value_map:
        keys = pa.array(list(rule.value_map), pa.string())
        targets = pa.array(list(rule.value_map.values()), pa.string())
        idx = pc.index_in(pc.utf8_lower(values), value_set=keys)
        checks.fail(
            pc.and_(pc.is_valid(values), pc.is_null(idx)),
            "unmapped_value",
            lambda v: f"{name}: value {v!r} is not in the mapping's value map",
            text,
        )
        values = pc.take(targets, idx)
    if rule.lower:
        values = pc.utf8_lower(values)
    if column.allowed:
        ok = pc.is_in(values, value_set=pa.array(column.allowed, pa.string()))
        allowed = ", ".join(column.allowed)
        checks.fail(
            pc.and_(pc.is_valid(values), pc.invert(ok)),
            "invalid_value",
            lambda v: f"{name}: {v!r} is not one of {allowed}",
            values,
        )
    too_long = pc.greater(pc.utf8_length(values), column.max_length)
    checks.fail(
        too_long, "too_long", lambda _v: f"{name}: longer than {column.max_length} characters", None
    )
    if column.pattern:
        ok = pc.match_substring_regex(values, f"^(?:{column.pattern})$")
        checks.fail(
            pc.and_(pc.invert(ok), pc.invert(too_long)),
            "bad_format",
            lambda v: f"{name}: {v!r} does not look like a valid identifier",
            values,
        )
        # A full-match identifier pattern starts with a letter or digit: no formula risk.
        return values
    if column.allowed:
        return values
    return neutralise_formulas(values)


def _parse_numbers(
    column: Column, rule: ColumnRule, text: pa.Array, present: pa.Array, checks: _Checks
) -> pa.Array:
    name = column.name
    text_num = text
    if rule.thousands:
        text_num = pc.replace_substring(text_num, rule.thousands, "")
    if rule.decimal == ",":
        text_num = pc.replace_substring(text_num, ",", ".")
    target = pa.int64() if column.type is ColumnType.INT else pa.float64()
    try:
        return pc.cast(text_num, target)
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError):
        pattern = _INT_RE if column.type is ColumnType.INT else _FLOAT_RE
        ok = pc.match_substring_regex(text_num, pattern)
        kind = "an integer" if column.type is ColumnType.INT else "a number"
        checks.fail(
            pc.and_(present, pc.invert(ok)),
            "bad_number",
            lambda v: f"{name}: {v!r} is not {kind}",
            text,
        )
        return pc.cast(pc.if_else(ok, text_num, None), target, safe=False)


def _convert_number(
    column: Column,
    rule: ColumnRule,
    text: pa.Array,
    checks: _Checks,
    parsed: pa.Array | None = None,
) -> pa.Array:
    name = column.name
    numbers = (
        parsed
        if parsed is not None
        else _parse_numbers(column, rule, text, pc.is_valid(text), checks)
    )
    if column.type is ColumnType.FLOAT:
        finite = pc.is_finite(numbers)
        if not pc.all(pc.fill_null(finite, True)).as_py():
            checks.fail(
                pc.invert(pc.fill_null(finite, True)),
                "bad_number",
                lambda v: f"{name}: {v!r} is not a finite number",
                text,
            )
            numbers = pc.if_else(finite, numbers, None)
        if rule.multiply != 1.0 or rule.add != 0.0:
            # Unit conversions produce long binary fractions; 4 decimals is finer than any
            # source measures.
            numbers = pc.round(pc.add(pc.multiply(numbers, rule.multiply), rule.add), 4)
    if column.minimum is not None or column.maximum is not None:
        lo = column.minimum if column.minimum is not None else -np.inf
        hi = column.maximum if column.maximum is not None else np.inf
        out = pc.or_(pc.less(numbers, lo), pc.greater(numbers, hi))
        checks.fail(
            out,
            "out_of_range",
            lambda v: f"{name}: {v} is outside the allowed range [{lo:g}, {hi:g}]",
            numbers,
        )
    return numbers


def _convert_date(
    column: Column, rule: ColumnRule, text: pa.Array, as_of: dt.date, checks: _Checks
) -> pa.Array:
    name = column.name
    parsed: pa.Array | None = None
    for fmt in rule.date_formats:
        attempt = pc.strptime(text, format=fmt, unit="s", error_is_null=True)
        parsed = attempt if parsed is None else pc.coalesce(parsed, attempt)
    assert parsed is not None
    dates = pc.cast(parsed, pa.date32())
    formats = " or ".join(rule.date_formats)
    checks.fail(
        pc.and_(pc.is_valid(text), pc.is_null(dates)),
        "bad_date",
        lambda v: f"{name}: {v!r} is not a date in the format {formats}",
        text,
    )
    if rule.align == "week_start":
        days = pc.cast(dates, pa.int32())
        # 1970-01-01 was a Thursday: (days + 3) % 7 is 0 on Mondays (integer division truncates,
        # which is exact for the non-negative day numbers of dates after 1970).
        shifted = pc.add(days, 3)
        weekday = pc.subtract(shifted, pc.multiply(pc.divide(shifted, 7), 7))
        dates = pc.cast(pc.cast(pc.subtract(days, weekday), pa.int32()), pa.date32())
    early = pc.less(dates, pa.scalar(MIN_DATE, pa.date32()))
    checks.fail(early, "date_out_of_range", lambda v: f"{name}: {v} is before {MIN_DATE}", dates)
    if column.max_future_days is not None:
        limit = as_of + dt.timedelta(days=column.max_future_days)
        late = pc.greater(dates, pa.scalar(limit, pa.date32()))
        checks.fail(
            late, "future_date", lambda v: f"{name}: {v} is after {limit} (as of {as_of})", dates
        )
    return dates


def _convert_bool(column: Column, rule: ColumnRule, text: pa.Array, checks: _Checks) -> pa.Array:
    name = column.name
    lowered = pc.utf8_lower(text)
    is_true = pc.is_in(lowered, value_set=pa.array(rule.true_values, pa.string()))
    is_false = pc.is_in(lowered, value_set=pa.array(rule.false_values, pa.string()))
    choices = ", ".join(rule.true_values + rule.false_values)
    checks.fail(
        pc.and_(pc.is_valid(text), pc.invert(pc.or_(is_true, is_false))),
        "bad_boolean",
        lambda v: f"{name}: {v!r} is not one of {choices}",
        text,
    )
    return pc.if_else(is_true, True, pc.if_else(is_false, False, None))


def _convert(
    column: Column,
    rule: ColumnRule,
    text: pa.Array,
    ctx: _BatchContext,
    failures: list[_Failure],
    parsed: pa.Array | None = None,
) -> pa.Array:
    checks = _Checks(column.name, failures)
    if column.required:
        checks.fail(
            pc.is_null(text),
            "missing_value",
            lambda _v: f"{column.name} is required but empty",
            None,
        )
    if column.type is ColumnType.TEXT:
        return _convert_text(column, rule, text, checks)
    if column.type in (ColumnType.INT, ColumnType.FLOAT):
        return _convert_number(column, rule, text, checks, parsed)
    if column.type is ColumnType.DATE:
        return _convert_date(column, rule, text, ctx.as_of, checks)
    return _convert_bool(column, rule, text, checks)


def _single_source(rule: ColumnRule) -> str | None:
    """The one raw column a rule reads, when it reads exactly one."""
    columns = rule.raw_columns
    return columns[0] if len(columns) == 1 else None


def _take(values: pa.Array, index: np.ndarray[Any, Any]) -> pa.Array:
    if pa.types.is_boolean(values.type):
        # Taking from a bit-packed array is slow; numpy on bytes is not.
        valid = np.asarray(pc.is_valid(values).to_numpy(zero_copy_only=False), dtype=bool)
        data = _bool_np(values)
        return pa.array(data[index], mask=~valid[index])
    return pc.take(values, pa.array(index))


def _unchanged(converted: pa.Array, raw: pa.Array) -> bool:
    """Whether converting left every value (and every null) exactly as it was."""
    if converted.type != raw.type or converted.null_count != raw.null_count:
        return False
    if raw.null_count and not pc.all(pc.equal(pc.is_null(converted), pc.is_null(raw))).as_py():
        return False
    return bool(pc.all(pc.equal(converted, raw)).as_py())


# Rows compared with their neighbour to tell a column in runs (a sorted file's weeks and
# stores) from one that changes every few rows.
_RUN_PROBE = 1024


def _distinct(values: pa.Array) -> tuple[pa.Array, np.ndarray[Any, Any]]:
    """The distinct values of ``values`` (null included, in order of first appearance) and
    each row's index into them. A column in long runs is encoded from its runs, which costs
    a third of hashing every row; the result is the same."""
    probe = min(len(values) - 1, _RUN_PROBE)
    if probe > 0:
        same = pc.equal(values.slice(1, probe), values.slice(0, probe))
        changes = probe - pc.sum(pc.fill_null(same, False)).as_py()
        if changes * 16 <= probe:
            runs = pc.run_end_encode(values)
            ends = np.asarray(runs.run_ends.to_numpy(zero_copy_only=False), dtype=np.int64)
            encoded = pc.dictionary_encode(runs.values, null_encoding="encode")
            per_run = np.asarray(encoded.indices.to_numpy(zero_copy_only=False))
            return encoded.dictionary, np.repeat(per_run, np.diff(ends, prepend=0))
    encoded = pc.dictionary_encode(values, null_encoding="encode")
    return encoded.dictionary, np.asarray(encoded.indices.to_numpy(zero_copy_only=False))


def _column_values(
    column: Column,
    rule: ColumnRule,
    ctx: _BatchContext,
    failures: list[_Failure],
    encodings: dict[str, Encoding],
) -> pa.Array:
    """Convert one standard column. Low-cardinality text, date and boolean sources (ids, dates,
    units, flags) are converted once per distinct value and mapped back, which is what makes
    the common case fast; the conversion is kept in ``encodings``. Text that conversion leaves
    as it was (clean ids, units) is the raw column itself, not a copy."""
    source = _single_source(rule)
    if source is not None:
        if column.type in (ColumnType.INT, ColumnType.FLOAT):
            return _fast_number(column, rule, source, ctx, failures)
        raw = ctx.untrimmed(source)
        distinct, index = _distinct(raw)
        if len(distinct) <= max(64, ctx.n // 8):
            sub = _BatchContext(pa.table({source: distinct}), ctx.mapping, ctx.as_of)
            local: list[_Failure] = []
            converted = _convert(column, rule, _source_values(rule, sub), sub, local)
            for f in local:
                f.mask = f.mask[index]
                f.index = index
            failures.extend(local)
            encodings[column.name] = (converted, index)
            if column.type is ColumnType.TEXT and _unchanged(converted, distinct):
                return raw
            return _take(converted, index)
    return _convert(column, rule, _source_values(rule, ctx), ctx, failures)


def _fast_number(
    column: Column,
    rule: ColumnRule,
    source: str,
    ctx: _BatchContext,
    failures: list[_Failure],
) -> pa.Array:
    """Numbers straight from the raw text when every value parses; the careful path otherwise."""
    if rule.source_column is not None and rule.thousands is None and rule.decimal == ".":
        raw = ctx.untrimmed(source)
        target = pa.int64() if column.type is ColumnType.INT else pa.float64()
        try:
            parsed = pc.cast(raw, target)
        except (pa.ArrowInvalid, pa.ArrowNotImplementedError):
            pass
        else:
            return _convert(column, rule, raw, ctx, failures, parsed)
    return _convert(column, rule, _source_values(rule, ctx), ctx, failures)


def _weather_rules(cols: dict[str, pa.Array], ctx: _BatchContext, failures: list[_Failure]) -> None:
    observation, date, issue = cols["observation"], cols["date"], cols["issue_date"]
    forecast = _bool_np(pc.equal(observation, "forecast"))
    historical = _bool_np(pc.equal(observation, "historical"))
    no_issue = _bool_np(pc.is_null(issue))
    m = forecast & no_issue
    if m.any():
        failures.append(
            _Failure(
                m, "missing_value", "issue_date", lambda _v: "forecast rows need issue_date", None
            )
        )
    days_ahead = pc.subtract(pc.cast(date, pa.int32()), pc.cast(issue, pa.int32()))
    bad_horizon = _bool_np(pc.or_(pc.less(days_ahead, 0), pc.greater(days_ahead, 16)))
    m = forecast & ~no_issue & bad_horizon
    if m.any():
        failures.append(
            _Failure(
                m,
                "inconsistent_forecast",
                "date",
                lambda v: f"forecast for {v} must fall 0-16 days after its issue_date",
                date,
            )
        )
    late = _bool_np(pc.greater(date, pa.scalar(ctx.as_of, pa.date32())))
    m = historical & late
    if m.any():
        failures.append(
            _Failure(
                m,
                "future_date",
                "date",
                lambda v: f"historical weather dated {v} is after {ctx.as_of}",
                date,
            )
        )
    m = historical & ~no_issue
    if m.any():
        failures.append(
            _Failure(
                m,
                "inconsistent_forecast",
                "issue_date",
                lambda _v: "historical rows must not have an issue_date",
                None,
            )
        )


_ROW_RULES: dict[str, Callable[[dict[str, pa.Array], _BatchContext, list[_Failure]], None]] = {
    "weather": _weather_rules,
}


def _when_mask(when: Condition | None, ctx: _BatchContext) -> np.ndarray[Any, Any]:
    if when is None:
        return np.ones(ctx.n, dtype=bool)
    values = ctx.raw(when.column)
    if when.values is None:
        return _bool_np(pc.is_valid(values))
    return _bool_np(pc.is_in(pc.utf8_lower(values), value_set=pa.array(when.values, pa.string())))


def original_rows(table: pa.Table, indices: list[int]) -> list[str]:
    """The raw rows at ``indices`` as CSV lines (what the file said, untrimmed)."""

    if not indices:
        return []
    taken = table.take(pa.array(indices, pa.int64()))
    columns = [taken.column(i).to_pylist() for i in range(taken.num_columns)]
    return [csv_line([c[i] for c in columns]) for i in range(len(indices))]


def _constant(text: str) -> Callable[[Any], str]:
    return lambda _v: text


def _oversized(raw: pa.Table, max_field_bytes: int) -> list[_Failure]:
    """Rows with a field longer than ``max_field_bytes`` (checked only where one can be)."""
    out: list[_Failure] = []
    for name in raw.column_names:
        col = raw.column(name)
        data_bytes = sum(c.buffers()[2].size for c in col.chunks if c.buffers()[2] is not None)
        if data_bytes <= max_field_bytes:
            continue
        mask = _bool_np(pc.greater(pc.binary_length(col), max_field_bytes))
        if mask.any():
            message = f"a field is longer than {max_field_bytes} bytes"
            out.append(_Failure(mask, "field_too_large", name, _constant(message), None))
    return out


def _first_failure(failures: list[_Failure], n: int) -> np.ndarray[Any, Any]:
    """Index into ``failures`` of each row's first failure; -1 for rows that pass."""
    first = np.full(n, -1, dtype=np.int64)
    for i, f in enumerate(failures):
        first[f.mask & (first < 0)] = i
    return first


def _assemble(
    emitted: list[tuple[np.ndarray[Any, Any], dict[str, pa.Array], dict[str, Encoding]]],
    rejected: np.ndarray[Any, Any],
    row_numbers: np.ndarray[Any, Any],
    contract: Contract,
) -> tuple[pa.Table, np.ndarray[Any, Any], dict[str, Encoding]]:
    tables: list[pa.Table] = []
    rows: list[np.ndarray[Any, Any]] = []
    kept_encodings: dict[str, Encoding] = {}
    for when, cols, encodings in emitted:
        keep = when & ~rejected
        if not keep.any():
            continue
        table = pa.table(cols)
        everything = bool(keep.all())
        tables.append(table if everything else table.filter(pa.array(keep)))
        rows.append(row_numbers[keep])
        kept_encodings = {
            name: (values, index if everything else index[keep])
            for name, (values, index) in encodings.items()
        }
    schema = standard_schema(contract)
    if not tables:
        return schema.empty_table(), np.empty(0, dtype=np.int64), {}
    table = pa.concat_tables([t.cast(schema) for t in tables])
    record_rows = np.concatenate(rows)
    if len(tables) > 1:
        # Records of one raw row stay together, in raw row order.
        order = np.argsort(record_rows, kind="stable")
        table = table.take(pa.array(order))
        record_rows = record_rows[order]
        kept_encodings = {}
    return table, record_rows, kept_encodings


def normalize(
    raw: pa.Table,
    row_numbers: np.ndarray[Any, Any],
    mapping: SourceMapping,
    contract: Contract,
    as_of: dt.date,
    max_field_bytes: int,
) -> Normalized:
    """Map, type and validate one batch. Pure: same inputs, same outputs."""
    ctx = _BatchContext(raw, mapping, as_of)
    failures = _oversized(raw, max_field_bytes)
    emitted: list[tuple[np.ndarray[Any, Any], dict[str, pa.Array], dict[str, Encoding]]] = []
    for emit in mapping.emits:
        when = _when_mask(emit.when, ctx)
        emit_failures: list[_Failure] = []
        cols: dict[str, pa.Array] = {}
        encodings: dict[str, Encoding] = {}
        for column in contract.columns:
            rule = emit.rules.get(column.name)
            if rule is None:
                cols[column.name] = pa.nulls(ctx.n, _arrow_type(column.type))
            else:
                cols[column.name] = _column_values(column, rule, ctx, emit_failures, encodings)
        row_rule = _ROW_RULES.get(contract.source)
        if row_rule is not None:
            row_rule(cols, ctx, emit_failures)
        for f in emit_failures:
            f.mask = f.mask & when
        failures.extend(emit_failures)
        emitted.append((when, cols, encodings))
    first = _first_failure(failures, ctx.n)
    rejected = first >= 0
    rejects = Rejects()
    bad_idx = np.flatnonzero(rejected).tolist()
    for i, original in zip(bad_idx, original_rows(raw, bad_idx), strict=True):
        f = failures[int(first[i])]
        rejects.add(int(row_numbers[i]), f.code, f.column, f.message(f.value(i)), original)
    table, record_rows, encodings = _assemble(emitted, rejected, row_numbers, contract)
    return Normalized(table, record_rows, ctx.n - len(bad_idx), rejects, encodings)


def _arrow_type(t: ColumnType) -> pa.DataType:
    return {
        ColumnType.TEXT: pa.string(),
        ColumnType.INT: pa.int64(),
        ColumnType.FLOAT: pa.float64(),
        ColumnType.DATE: pa.date32(),
        ColumnType.BOOL: pa.bool_(),
    }[t]


def standard_schema(contract: Contract) -> pa.Schema:
    """The Arrow schema of a contract's standard table."""

    return pa.schema([pa.field(c.name, _arrow_type(c.type)) for c in contract.columns])
