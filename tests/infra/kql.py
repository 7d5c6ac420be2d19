"""Reading the monitoring queries the Bicep deploys, and checking them against the telemetry.

The workbook (``infra/monitoring/model-health.workbook.json``) and the log alert rules
(``infra/monitoring/*.kql``) query Application Insights' ``customMetrics`` and
``customEvents``. A query that names a metric, event or custom dimension the app does not emit
shows an empty panel, or an alert that never fires, without any error: ``problems`` finds
those names.

What a query uses is read from its text: the table it starts from, the names it compares
``name`` with (``name == "x"``, ``name in ("x", "y")``, ``maxif(value, name == "x")``), and
every ``customDimensions.x`` / ``customDimensions["x"]``. Each dimension must be emitted by
every name the query selects.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

from tests.infra.bicep import INFRA

MONITORING = INFRA / "monitoring"
WORKBOOK = MONITORING / "model-health.workbook.json"
TABLES = {"customMetrics": "metric", "customEvents": "event"}

_STRING = r'"([^"\\]*)"'
_NAME_EQ = re.compile(r"\bname\s*==\s*" + _STRING)
_NAME_IN = re.compile(r"\bname\s+in\s*\(([^)]*)\)")
_DIM = re.compile(
    r"\bcustomDimensions(?:\.([A-Za-z_][A-Za-z0-9_.]*)|\[\s*[\"']([^\"']+)[\"']\s*\])"
)
_COMMENT = re.compile(r"//[^\n]*")


@dataclass(frozen=True)
class Query:
    where: str  # "workbook: <panel>" or "<file>.kql"
    text: str


@dataclass
class Uses:
    table: str
    names: set[str] = field(default_factory=set)
    dimensions: set[str] = field(default_factory=set)


def workbook_queries(path: Path = WORKBOOK) -> list[Query]:
    data = json.loads(path.read_text(encoding="utf-8"))
    out = []
    for item in data["items"]:
        content = item.get("content") or {}
        if item.get("type") == 3:
            out.append(Query(f"workbook: {content.get('title') or item['name']}", content["query"]))
    return out


def alert_queries(folder: Path = MONITORING) -> list[Query]:
    return [Query(p.name, p.read_text(encoding="utf-8")) for p in sorted(folder.glob("*.kql"))]


def uses(query: str) -> Uses:
    """What one query reads: its first table, the names it selects, the dimensions it uses."""
    text = _COMMENT.sub("", query)
    first = re.search(r"\b(customMetrics|customEvents|requests|exceptions|traces|dependencies)\b",
                      text)  # fmt: skip
    found = Uses(first.group(1) if first else "")
    found.names.update(_NAME_EQ.findall(text))
    for group in _NAME_IN.findall(text):
        found.names.update(re.findall(_STRING, group))
    for dotted, bracketed in _DIM.findall(text):
        found.dimensions.add(dotted or bracketed)
    return found


Catalogue = Mapping[str, Mapping[str, set[str]]]  # kind (metric|event) -> name -> dimensions


def problems(queries: list[Query], emitted: Catalogue) -> list[str]:
    """Every name or dimension a query uses that the telemetry does not emit."""
    out: list[str] = []
    for query in queries:
        used = uses(query.text)
        kind = TABLES.get(used.table)
        if kind is None:
            if used.dimensions:
                out.append(f"{query.where}: custom dimensions on table {used.table!r}")
            continue
        known = emitted.get(kind, {})
        if not used.names:
            out.append(f"{query.where}: selects no {kind} by name")
        for name in sorted(used.names):
            if name not in known:
                out.append(f"{query.where}: {kind} {name!r} is not emitted")
                continue
            for dimension in sorted(used.dimensions - known[name]):
                out.append(f"{query.where}: {kind} {name!r} has no dimension {dimension!r}")
    return out
