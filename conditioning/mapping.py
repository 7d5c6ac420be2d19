"""Declarative source mappings: how one vendor layout becomes a standard table.

A mapping is a YAML file (see ``conditioning/mappings/`` and docs/data-contracts.md). It names
the standard ``source`` it feeds, how to read the file, and for every standard column where its
value comes from: a raw column (``from``), a constant (``const``) or a derived key (``concat``),
with format hints (date formats, decimal comma, units, value maps). An optional ``emit`` list turns
one raw row into several standard records (wide to long, e.g. five markdown columns become five
events). Onboarding a vendor layout means writing one such file; no code changes.

``load_mapping`` validates the whole file against the source's contract and raises
``MappingError`` listing every problem at once.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from adapters.errors import MlopsError
from conditioning.contracts import CONTRACTS, ColumnType, Contract

MAPPINGS_DIR = Path(__file__).parent / "mappings"

_CONVERSIONS = {
    "fahrenheit_to_celsius": (5.0 / 9.0, -32.0 * 5.0 / 9.0),
    "inches_to_mm": (25.4, 0.0),
    "pounds_to_kg": (0.45359237, 0.0),
    "percent_to_fraction": (0.01, 0.0),
}
_FORMATS = ("auto", "csv", "jsonl", "parquet", "xlsx")
_COLUMN_KEYS = {
    "from",
    "const",
    "concat",
    "date_formats",
    "align",
    "decimal",
    "thousands",
    "multiply",
    "add",
    "convert",
    "map",
    "true_values",
    "false_values",
    "default",
    "lower",
}


class MappingError(MlopsError):
    """A mapping file is malformed or does not fit its contract; the message lists every problem."""

    def __init__(self, name: str, problems: list[str]) -> None:
        self.problems = list(problems)
        lines = "\n".join(f"  - {p}" for p in problems)
        super().__init__(f"mapping {name!r} has {len(problems)} problem(s):\n{lines}")


@dataclass(frozen=True)
class Part:
    """One piece of a ``concat``: a literal or a raw column (optionally zero-padded)."""

    literal: str | None = None
    column: str | None = None
    pad: int = 0


@dataclass(frozen=True)
class ColumnRule:
    """Where one standard column's value comes from and how to read it."""

    target: str
    source_column: str | None = None
    const: str | None = None
    is_const: bool = False
    concat: tuple[Part, ...] = ()
    date_formats: tuple[str, ...] = ("%Y-%m-%d",)
    align: str | None = None
    decimal: str = "."
    thousands: str | None = None
    multiply: float = 1.0
    add: float = 0.0
    value_map: Mapping[str, str] | None = None
    true_values: tuple[str, ...] = ("true", "1", "yes", "y", "t")
    false_values: tuple[str, ...] = ("false", "0", "no", "n", "f")
    default: str | None = None
    lower: bool = False

    @property
    def raw_columns(self) -> tuple[str, ...]:
        cols = [p.column for p in self.concat if p.column]
        if self.source_column:
            cols.append(self.source_column)
        return tuple(cols)


@dataclass(frozen=True)
class Condition:
    """``when`` of an emit block: the raw column is non-empty, or equals one of ``values``."""

    column: str
    values: tuple[str, ...] | None = None


@dataclass(frozen=True)
class Emit:
    """One record emitted per raw row that satisfies ``when`` (always, when ``when`` is None)."""

    when: Condition | None
    rules: Mapping[str, ColumnRule]


@dataclass(frozen=True)
class ReadOptions:
    format: str = "auto"
    delimiter: str | None = None
    encoding: str | None = None
    null_values: tuple[str, ...] = ("",)
    sheet: str | None = None


@dataclass(frozen=True)
class SourceMapping:
    """A validated mapping: read options plus, per emitted record, one rule per standard column."""

    name: str
    source: str
    description: str
    read: ReadOptions
    emits: tuple[Emit, ...]
    sha256: str
    raw: Mapping[str, Any] = field(repr=False, default_factory=dict)

    @property
    def contract(self) -> Contract:
        return CONTRACTS[self.source]

    @property
    def raw_columns(self) -> tuple[str, ...]:
        """Raw columns the file must have (unique, in first-use order)."""
        seen: dict[str, None] = {}
        for emit in self.emits:
            if emit.when is not None:
                seen.setdefault(emit.when.column, None)
            for rule in emit.rules.values():
                for c in rule.raw_columns:
                    seen.setdefault(c, None)
        return tuple(seen)

    def missing_columns(self, header: Iterable[str]) -> list[str]:
        """Raw columns this mapping needs that ``header`` lacks (compared case-insensitively)."""
        have = {h.strip().lower() for h in header}
        return [c for c in self.raw_columns if c.lower() not in have]


def _as_str(value: Any) -> str | None:
    if value is None:
        return None
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


def _parse_rule(target: str, spec: Any, contract: Contract, problems: list[str]) -> ColumnRule:
    where = f"columns.{target}"
    if target not in contract.names:
        problems.append(f"{where}: {target!r} is not a column of the {contract.source} contract")
    if not isinstance(spec, dict):
        if isinstance(spec, str):
            spec = {"from": spec}
        else:
            problems.append(f"{where}: expected a mapping or a raw column name")
            return ColumnRule(target=target, is_const=True)
    unknown = set(spec) - _COLUMN_KEYS
    if unknown:
        problems.append(f"{where}: unknown keys {sorted(unknown)}")
    sources = [k for k in ("from", "const", "concat") if k in spec]
    if len(sources) != 1:
        problems.append(f"{where}: needs exactly one of from / const / concat")
    parts: list[Part] = []
    for i, piece in enumerate(spec.get("concat") or []):
        if isinstance(piece, dict) and "from" in piece:
            parts.append(Part(column=str(piece["from"]), pad=int(piece.get("pad", 0))))
        elif isinstance(piece, str | int):
            parts.append(Part(literal=str(piece)))
        else:
            problems.append(f"{where}.concat[{i}]: expected a literal or {{from: column}}")
    formats = spec.get("date_formats", ["%Y-%m-%d"])
    if isinstance(formats, str):
        formats = [formats]
    align = spec.get("align")
    if align not in (None, "week_start"):
        problems.append(f"{where}: align must be week_start")
    multiply, add = float(spec.get("multiply", 1.0)), float(spec.get("add", 0.0))
    convert = spec.get("convert")
    if convert is not None:
        if convert not in _CONVERSIONS:
            problems.append(f"{where}: convert must be one of {sorted(_CONVERSIONS)}")
        else:
            m, a = _CONVERSIONS[convert]
            multiply, add = multiply * m, add * m + a
    decimal = str(spec.get("decimal", "."))
    if decimal not in (".", ","):
        problems.append(f"{where}: decimal must be '.' or ','")
    value_map = spec.get("map")
    if value_map is not None and not isinstance(value_map, dict):
        problems.append(f"{where}: map must be a mapping of raw value to standard value")
        value_map = None
    true_values = tuple(str(v).lower() for v in spec.get("true_values", ColumnRule.true_values))
    false_values = tuple(str(v).lower() for v in spec.get("false_values", ColumnRule.false_values))
    col_type = contract.column(target).type if target in contract.names else ColumnType.TEXT
    if col_type is not ColumnType.DATE and ("date_formats" in spec or align):
        problems.append(f"{where}: date_formats/align only apply to date columns")
    return ColumnRule(
        target=target,
        source_column=str(spec["from"]) if "from" in spec else None,
        const=_as_str(spec.get("const")),
        is_const="const" in spec,
        concat=tuple(parts),
        date_formats=tuple(str(f) for f in formats),
        align=align,
        decimal=decimal,
        thousands=_as_str(spec.get("thousands")),
        multiply=multiply,
        add=add,
        value_map=({str(k).lower(): str(v) for k, v in value_map.items()} if value_map else None),
        true_values=true_values,
        false_values=false_values,
        default=_as_str(spec.get("default")),
        lower=bool(spec.get("lower", False)),
    )


def _parse_rules(spec: Any, contract: Contract, where: str, problems: list[str]) -> dict[str, Any]:
    if spec is None:
        return {}
    if not isinstance(spec, dict):
        problems.append(f"{where}: expected a mapping of standard column to rule")
        return {}
    return {str(k): _parse_rule(str(k), v, contract, problems) for k, v in spec.items()}


def parse_mapping(doc: Mapping[str, Any], name: str) -> SourceMapping:
    """Validate a mapping document (already parsed from YAML) against its contract."""
    problems: list[str] = []
    source = str(doc.get("source", ""))
    if source not in CONTRACTS:
        raise MappingError(name, [f"source: must be one of {sorted(CONTRACTS)}, got {source!r}"])
    contract = CONTRACTS[source]
    read_doc = doc.get("read") or {}
    fmt = str(read_doc.get("format", "auto"))
    if fmt not in _FORMATS:
        problems.append(f"read.format: must be one of {_FORMATS}")
    delimiter = read_doc.get("delimiter")
    if delimiter is not None and (not isinstance(delimiter, str) or len(delimiter) != 1):
        problems.append("read.delimiter: must be a single character")
    nulls = read_doc.get("null_values", [""])
    read = ReadOptions(
        format=fmt,
        delimiter=delimiter,
        encoding=read_doc.get("encoding"),
        null_values=tuple(str(v) for v in nulls),
        sheet=read_doc.get("sheet"),
    )
    common = _parse_rules(doc.get("columns"), contract, "columns", problems)
    emits: list[Emit] = []
    emit_docs = doc.get("emit")
    if emit_docs is None:
        emits.append(Emit(when=None, rules=common))
    elif not isinstance(emit_docs, list) or not emit_docs:
        problems.append("emit: must be a non-empty list")
    else:
        for i, block in enumerate(emit_docs):
            where = f"emit[{i}]"
            when_doc = block.get("when") if isinstance(block, dict) else None
            when: Condition | None = None
            if when_doc is not None:
                if not isinstance(when_doc, dict) or "column" not in when_doc:
                    problems.append(f"{where}.when: needs a column")
                else:
                    values = when_doc.get("in")
                    when = Condition(
                        column=str(when_doc["column"]),
                        values=tuple(str(v).lower() for v in values) if values else None,
                    )
            own = _parse_rules(
                block.get("columns") if isinstance(block, dict) else None,
                contract,
                f"{where}.columns",
                problems,
            )
            emits.append(Emit(when=when, rules={**common, **own}))
    for i, emit in enumerate(emits):
        for col in contract.columns:
            if col.name not in emit.rules and col.required:
                where = "columns" if emit_docs is None else f"emit[{i}]"
                problems.append(f"{where}: required column {col.name!r} has no rule")
    if problems:
        raise MappingError(name, problems)
    canonical = json.dumps(doc, sort_keys=True, default=str).encode()
    return SourceMapping(
        name=name,
        source=source,
        description=str(doc.get("description", "")),
        read=read,
        emits=tuple(emits),
        sha256=hashlib.sha256(canonical).hexdigest(),
        raw=dict(doc),
    )


def load_mapping(path: Path) -> SourceMapping:
    """Read and validate one mapping file; ``MappingError`` when it is unusable."""

    try:
        doc = yaml.safe_load(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, yaml.YAMLError) as exc:
        raise MappingError(path.stem, [f"cannot read {path.name}: {exc}"]) from exc
    if not isinstance(doc, dict):
        raise MappingError(path.stem, ["the file must be a YAML mapping"])
    return parse_mapping(doc, str(doc.get("name", path.stem)))


def builtin_mappings(directory: Path = MAPPINGS_DIR) -> dict[str, list[SourceMapping]]:
    """Every mapping shipped in ``directory``, grouped by source, in file-name order."""
    found: dict[str, list[SourceMapping]] = {}
    for path in sorted(directory.glob("*.yaml")):
        mapping = load_mapping(path)
        found.setdefault(mapping.source, []).append(mapping)
    return found


def choose_mapping(candidates: Iterable[SourceMapping], header: Iterable[str]) -> SourceMapping:
    """The first candidate whose raw columns all appear in ``header``.

    Raises ``KeyError`` with the closest candidate's missing columns when none fits.
    """
    header = list(header)
    best: tuple[int, str, list[str]] | None = None
    for mapping in candidates:
        missing = mapping.missing_columns(header)
        if not missing:
            return mapping
        if best is None or len(missing) < best[0]:
            best = (len(missing), mapping.name, missing)
    if best is None:
        raise KeyError("no mapping is configured for this source")
    raise KeyError(f"closest mapping {best[1]!r} misses columns {best[2]}")
