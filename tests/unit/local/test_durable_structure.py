"""The local Durable engine's modules depend on each other without cycles."""

from __future__ import annotations

import ast
from graphlib import CycleError, TopologicalSorter
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[3] / "local" / "hosting" / "durable"


def _graph() -> dict[str, set[str]]:
    graph: dict[str, set[str]] = {}
    for path in sorted(PACKAGE.glob("*.py")):
        module = path.stem
        deps: set[str] = set()
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.ImportFrom) and node.module:
                parts = node.module.split(".")
                if parts[:3] == ["local", "hosting", "durable"] and len(parts) > 3:
                    deps.add(parts[3])
        graph[module] = deps
    return graph


def test_module_graph_is_acyclic() -> None:
    graph = _graph()
    assert {"codec", "context", "driver", "backend", "engine", "http"} <= set(graph)
    try:
        order = list(TopologicalSorter(graph).static_order())
    except CycleError as exc:
        raise AssertionError(f"import cycle in local/hosting/durable: {exc.args[1]}") from exc
    # The HTTP API is written against a protocol, never the engine that serves it.
    assert graph["engine"], "the engine imports its sibling modules"
    assert "engine" not in graph["http"]
    assert order.index("http") < order.index("engine")
