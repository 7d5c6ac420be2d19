"""Loading a CLI v2 pipeline YAML into plain data the executor can run.

The YAML is parsed twice: first as plain YAML, to reject what the executor cannot run with
one line naming the node and its type; then with ``azure.ai.ml.load_job`` (offline, no
credentials), so the executor accepts exactly what Azure ML accepts and nothing looser.
"""

from __future__ import annotations

import logging
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from adapters.errors import BadInputError

SUPPORTED_NODE_TYPES = frozenset({"command"})
_EXPR = re.compile(r"\$\{\{\s*([^}]+?)\s*\}\}")
# Types whose value is a path on disk (everything else is a literal parameter).
PATH_TYPES = frozenset({"uri_file", "uri_folder", "mlflow_model", "custom_model", "mltable"})


@dataclass(frozen=True)
class InputDef:
    """One input declared by a component."""

    type: str
    default: Any = None
    optional: bool = False


@dataclass(frozen=True)
class PipelineInput:
    """A pipeline-level input: a literal, or a typed path (absolute once resolved)."""

    type: str
    value: Any = None
    path: Path | None = None
    optional: bool = False

    @property
    def is_path(self) -> bool:
        return self.type in PATH_TYPES


@dataclass(frozen=True)
class StepSpec:
    """One command node, with the component it runs flattened in."""

    name: str
    command: str
    code_dir: Path
    # Node bindings as written: a literal, a "${{parent...}}" string, or {"type", "path"}.
    inputs: dict[str, Any]
    outputs: dict[str, Any]
    input_defs: dict[str, InputDef]
    output_types: dict[str, str]
    environment_variables: dict[str, str] = field(default_factory=dict)
    timeout_seconds: float | None = None
    environment: str = ""

    def dependencies(self) -> set[str]:
        """Names of the steps whose outputs this step consumes."""
        deps: set[str] = set()
        for raw in self.inputs.values():
            binding = raw.get("path") if isinstance(raw, dict) else raw
            if isinstance(binding, str):
                for expr in _EXPR.findall(binding):
                    parts = expr.split(".")
                    if len(parts) >= 3 and parts[0] == "parent" and parts[1] == "jobs":
                        deps.add(parts[2])
        return deps


@dataclass(frozen=True)
class PipelineSpec:
    path: Path
    display_name: str
    experiment_name: str
    description: str
    tags: dict[str, str]
    inputs: dict[str, PipelineInput]
    outputs: dict[str, str]
    steps: dict[str, StepSpec]
    continue_on_step_failure: bool = False

    def with_inputs(self, overrides: dict[str, str]) -> PipelineSpec:
        """A copy with pipeline inputs overridden (``--set inputs.NAME=VALUE`` semantics).

        Path inputs take a path (relative to the current directory); literals are parsed as
        YAML scalars so ``3`` is an int and ``true`` a bool, as on the Azure ML CLI.
        """
        import yaml

        inputs = dict(self.inputs)
        for name, raw in overrides.items():
            current = inputs.get(name)
            if current is not None and current.is_path:
                inputs[name] = PipelineInput(type=current.type, path=Path(raw).resolve())
            elif current is None and Path(raw).exists():
                kind = "uri_folder" if Path(raw).is_dir() else "uri_file"
                inputs[name] = PipelineInput(type=kind, path=Path(raw).resolve())
            else:
                value = yaml.safe_load(raw) if raw != "" else ""
                kind = current.type if current is not None else type(value).__name__
                inputs[name] = PipelineInput(type=kind, value=value)
        return PipelineSpec(
            path=self.path,
            display_name=self.display_name,
            experiment_name=self.experiment_name,
            description=self.description,
            tags=self.tags,
            inputs=inputs,
            outputs=self.outputs,
            steps=self.steps,
            continue_on_step_failure=self.continue_on_step_failure,
        )


def _one_line(exc: BaseException) -> str:
    text = " ".join(str(exc).split())
    return text[:400] or type(exc).__name__


def _prescan(path: Path) -> None:
    """Reject what the executor cannot run before the (slower, vaguer) SDK parse."""
    import yaml

    try:
        doc = yaml.safe_load(path.read_text(encoding="utf-8"))
    except yaml.YAMLError as exc:
        raise BadInputError(
            f"{path.name}: invalid YAML: {_one_line(exc)}", code="invalid_yaml"
        ) from exc
    if not isinstance(doc, dict):
        raise BadInputError(f"{path.name}: not a pipeline job (top level is not a mapping)")
    if str(doc.get("type", "pipeline")) != "pipeline":
        raise BadInputError(f"{path.name}: type {doc.get('type')!r} is not a pipeline job")
    jobs = doc.get("jobs")
    if not isinstance(jobs, dict) or not jobs:
        raise BadInputError(f"{path.name}: a pipeline job needs a non-empty 'jobs' mapping")
    for name, node in jobs.items():
        if not isinstance(node, dict):
            raise BadInputError(f"{path.name}: node {name!r} is not a mapping")
        node_type = str(node.get("type", "command"))
        component = node.get("component")
        if node_type not in SUPPORTED_NODE_TYPES:
            raise BadInputError(
                f"node {name!r} has type {node_type!r}, which the local executor does not run "
                "(supported: command)",
                code="unsupported_node",
            )
        if isinstance(component, str) and component.startswith("azureml:"):
            raise BadInputError(
                f"node {name!r} uses component {component!r} from a workspace or registry, "
                "which the local executor cannot fetch (use a local component YAML)",
                code="unsupported_node",
            )
        if isinstance(component, str):
            target = (path.parent / component.removeprefix("file:")).resolve()
            if not target.is_file():
                raise BadInputError(
                    f"node {name!r}: component file {component!r} not found",
                    code="unknown_component",
                )
            comp = yaml.safe_load(target.read_text(encoding="utf-8")) or {}
            comp_type = str(comp.get("type", "command")) if isinstance(comp, dict) else "?"
            if comp_type not in SUPPORTED_NODE_TYPES:
                raise BadInputError(
                    f"node {name!r} has component type {comp_type!r}, which the local executor "
                    "does not run (supported: command)",
                    code="unsupported_node",
                )


def _plain(value: Any) -> Any:
    """An SDK Input/Output/literal as plain data."""
    data = getattr(value, "_data", value)
    if data is None:
        return None
    if isinstance(data, str | int | float | bool):
        return data
    if isinstance(data, dict):
        return dict(data)
    kind = getattr(data, "type", None)
    path = getattr(data, "path", None)
    plain: dict[str, Any] = {}
    if kind is not None:
        plain["type"] = str(kind)
    if path is not None:
        plain["path"] = str(path)
    return plain or None


def _timeout(node: Any) -> float | None:
    limits = getattr(node, "limits", None)
    value = getattr(limits, "timeout", None) if limits is not None else None
    return float(value) if value else None


def _environment_name(env: Any) -> str:
    if env is None:
        return ""
    if isinstance(env, str):
        return env
    return str(getattr(env, "image", "") or getattr(env, "name", "") or "inline")


def load_pipeline(path: str | Path) -> PipelineSpec:
    """Parse ``path`` offline; raise ``BadInputError`` (one line) for anything not runnable."""
    yaml_path = Path(path).resolve()
    if not yaml_path.is_file():
        raise BadInputError(f"pipeline file {path} not found", code="not_found")
    _prescan(yaml_path)
    from azure.ai.ml import load_job

    # Parsing instantiates schema classes azure-ai-ml marks experimental, and it warns about
    # each one on stderr; that says nothing about the user's pipeline.
    logging.getLogger("azure.ai.ml._utils._experimental").setLevel(logging.ERROR)

    try:
        job: Any = load_job(str(yaml_path))
    except Exception as exc:
        raise BadInputError(f"{yaml_path.name}: {_one_line(exc)}", code="invalid_pipeline") from exc

    inputs: dict[str, PipelineInput] = {}
    for name, pin in (job.inputs or {}).items():
        data = _plain(pin)
        if isinstance(data, dict):
            kind = str(data.get("type", "string"))
            raw_path = data.get("path")
            if kind in PATH_TYPES:
                resolved = None
                if raw_path is not None:
                    if str(raw_path).startswith("azureml:"):
                        raise BadInputError(
                            f"pipeline input {name!r} refers to a workspace data asset "
                            f"({raw_path}); give a local path instead",
                            code="unsupported_input",
                        )
                    resolved = (yaml_path.parent / str(raw_path).removeprefix("file:")).resolve()
                inputs[name] = PipelineInput(type=kind, path=resolved, optional=raw_path is None)
            else:
                inputs[name] = PipelineInput(
                    type=kind, value=data.get("default", data.get("value"))
                )
        else:
            inputs[name] = PipelineInput(type=type(data).__name__, value=data)
    outputs = {
        name: str((_plain(out) or {}).get("type", "uri_folder"))
        for name, out in (job.outputs or {}).items()
    }

    steps: dict[str, StepSpec] = {}
    for name, node in job.jobs.items():
        component = node.component
        if isinstance(component, str):
            raise BadInputError(
                f"node {name!r} refers to component {component!r}, which is not a local file",
                code="unsupported_node",
            )
        command = getattr(component, "command", None)
        if not command:
            raise BadInputError(f"node {name!r} has no command", code="invalid_pipeline")
        base = Path(str(getattr(component, "base_path", None) or yaml_path.parent))
        code = getattr(component, "code", None)
        code_dir = (base / str(code)).resolve() if code else base
        if not code_dir.is_dir():
            raise BadInputError(f"node {name!r}: code folder {code_dir.name!r} not found")
        input_defs = {
            iname: InputDef(
                type=str(idef.type),
                default=getattr(idef, "default", None),
                optional=bool(getattr(idef, "optional", False)),
            )
            for iname, idef in (component.inputs or {}).items()
        }
        output_types = {oname: str(odef.type) for oname, odef in (component.outputs or {}).items()}
        node_inputs = {k: _plain(v) for k, v in (node.inputs or {}).items()}
        node_outputs = {k: _plain(v) for k, v in (node.outputs or {}).items()}
        env_vars = {
            str(k): str(v)
            for k, v in {
                **(getattr(component, "environment_variables", None) or {}),
                **(node.environment_variables or {}),
            }.items()
        }
        steps[name] = StepSpec(
            name=name,
            command=str(command).strip(),
            code_dir=code_dir,
            inputs={k: v for k, v in node_inputs.items() if v is not None},
            outputs=node_outputs,
            input_defs=input_defs,
            output_types=output_types,
            environment_variables=env_vars,
            timeout_seconds=_timeout(node),
            environment=_environment_name(getattr(component, "environment", None)),
        )

    settings = getattr(job, "settings", None)
    return PipelineSpec(
        path=yaml_path,
        display_name=str(job.display_name or yaml_path.stem),
        experiment_name=str(job.experiment_name or yaml_path.parent.name),
        description=str(job.description or ""),
        tags={str(k): str(v) for k, v in (job.tags or {}).items()},
        inputs=inputs,
        outputs=outputs,
        steps=steps,
        continue_on_step_failure=bool(getattr(settings, "continue_on_step_failure", False)),
    )
