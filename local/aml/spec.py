"""Loading a CLI v2 pipeline YAML into plain data the executor can run.

The YAML is parsed twice: first as plain YAML, to reject what the executor cannot run with
one line naming the node and its type (and to see data references as written: the SDK strips
``azureml:`` from them); then with ``azure.ai.ml.load_job`` (offline, no credentials), so the
executor accepts exactly what Azure ML accepts and nothing looser.

Nodes of ``type: pipeline`` (pipeline components) are flattened into steps named
``outer/inner``, their inputs and outputs bound through. ``PipelineSpec.bind`` applies
``--set`` overrides by the declared input type and resolves every pipeline input to a value
or a local path; whatever cannot be served locally fails there, at submit, in one line.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from adapters.errors import BadInputError
from local.aml.locations import (
    DEFAULT_DATASTORE,
    AssetResolver,
    ComponentResolver,
    Datastores,
    check_output_path,
    is_component_reference,
    local_input_path,
    parse_datastore_uri,
    resolve_component,
)
from local.aml.spark import SparkSpec, input_modes_direct, parse_spark
from local.aml.store import DEFAULT_ROOT
from local.aml.sweep import SweepSpec, parse_sweep

SUPPORTED_NODE_TYPES = frozenset({"command", "parallel", "pipeline", "spark", "sweep"})
_EXPR = re.compile(r"\$\{\{\s*([^}]+?)\s*\}\}")
# Types whose value is a path on disk (everything else is a literal parameter).
PATH_TYPES = frozenset({"uri_file", "uri_folder", "mlflow_model", "custom_model", "mltable"})
LITERAL_TYPES = frozenset({"string", "integer", "number", "boolean"})
_PY_TYPES = {"str": "string", "int": "integer", "float": "number", "bool": "boolean"}
# Node settings that change how Azure ML places or scales a step; one machine ignores them.
IGNORED_NODE_SETTINGS = ("distribution", "resources", "services", "queue_settings", "identity")
# Parallel defaults (Azure ML's): tries per mini-batch, seconds per run() call, files per batch,
# bytes per tabular mini-batch.
DEFAULT_MAX_TRIES = 3
DEFAULT_RUN_TIMEOUT = 60.0
DEFAULT_FILES_PER_BATCH = 1
DEFAULT_TABULAR_BATCH_BYTES = 1024 * 1024


@dataclass(frozen=True)
class InputDef:
    """One input declared by a component, with its declared constraints."""

    type: str
    default: Any = None
    optional: bool = False
    enum: tuple[str, ...] = ()
    min: float | None = None
    max: float | None = None


@dataclass(frozen=True)
class PipelineInput:
    """A pipeline-level input: a literal, or a typed path (absolute once bound).

    ``raw`` keeps a path input's location as written (a relative path, a datastore URI, an
    asset or a URL) until ``PipelineSpec.bind`` resolves it.
    """

    type: str
    value: Any = None
    path: Path | None = None
    optional: bool = False
    raw: str | None = None

    @property
    def is_path(self) -> bool:
        return self.type in PATH_TYPES


@dataclass(frozen=True)
class ParallelSpec:
    """The ``type: parallel`` settings of one node (``run_function`` tasks)."""

    input_data: str  # the input whose data is split into mini-batches
    entry_script: str
    program_arguments: str = ""
    append_row_to: str = ""  # an output name, or ''
    mini_batch_size: int | None = None
    partition_keys: tuple[str, ...] = ()
    max_concurrency: int = 1
    max_tries: int = DEFAULT_MAX_TRIES
    run_timeout: float = DEFAULT_RUN_TIMEOUT
    mini_batch_error_threshold: int = -1
    error_threshold: int = -1


@dataclass(frozen=True)
class StepSpec:
    """One command or parallel node, with the component it runs flattened in.

    ``code_dir`` is the folder Azure ML snapshots for the step; ``None`` when the component
    has no ``code`` (the step then starts in an empty folder, as on Azure ML).
    """

    name: str
    command: str
    code_dir: Path | None
    # Node bindings as written: a literal, a "${{parent...}}" string, or {"type", "path"}.
    inputs: dict[str, Any]
    outputs: dict[str, Any]
    input_defs: dict[str, InputDef]
    output_types: dict[str, str]
    environment_variables: dict[str, str] = field(default_factory=dict)
    timeout_seconds: float | None = None
    environment: str = ""
    kind: str = "command"
    parallel: ParallelSpec | None = None
    sweep: SweepSpec | None = None
    spark: SparkSpec | None = None
    # The environment as the component declares it (azure.ai.ml's ``Environment`` or a
    # reference string) and the file that declares it, for local.aml.environments.
    environment_decl: Any = field(default=None, compare=False)
    environment_source: str = ""

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
    # Explicit pipeline output locations as written (datastore URIs).
    output_locations: dict[str, str] = field(default_factory=dict)
    # settings.default_datastore: where outputs that name no path are written.
    default_datastore: str = DEFAULT_DATASTORE
    # Settings this machine ignores, one line each (listed once per job in its log).
    warnings: tuple[str, ...] = ()
    datastores: Datastores = field(default_factory=lambda: Datastores(DEFAULT_ROOT / "datastores"))
    asset_resolver: AssetResolver | None = None

    def with_inputs(self, overrides: Mapping[str, str]) -> PipelineSpec:
        """A copy with pipeline inputs overridden (``--set inputs.NAME=VALUE`` semantics).

        Each value is converted by the input's declared type: path types take a location
        (resolved by ``bind``), ``string`` keeps the text as typed (``010`` stays ``"010"``),
        ``integer``/``number``/``boolean`` are parsed strictly. Raises ``BadInputError`` for an
        undeclared input or a value that is not of the declared type.
        """
        unknown = sorted(set(overrides) - set(self.inputs))
        if unknown:
            raise BadInputError(
                f"pipeline {self.path.name} declares no input named {', '.join(unknown)}",
                code="unknown_input",
            )
        inputs = dict(self.inputs)
        for name, raw in overrides.items():
            current = inputs[name]
            if current.is_path:
                inputs[name] = PipelineInput(type=current.type, raw=str(raw))
            else:
                value = convert_literal(f"--set inputs.{name}", current.type, str(raw))
                inputs[name] = PipelineInput(type=current.type, value=value)
        return replace(self, inputs=inputs)

    def bind(self, overrides: Mapping[str, str] | None = None) -> PipelineSpec:
        """Overrides applied and every path input resolved to an existing local path.

        Raises ``BadInputError`` (one line naming the input and how to run it locally) for a
        web URL, a workspace asset, a datastore path with no local data, or a missing file.
        """
        spec = self.with_inputs(overrides or {})
        inputs: dict[str, PipelineInput] = {}
        for name, pin in spec.inputs.items():
            if not pin.is_path or pin.raw is None:
                inputs[name] = pin
                continue
            how = f"run it locally with --set inputs.{name}=LOCAL_PATH"
            what = f"pipeline input {name!r}"
            path = local_input_path(
                pin.raw,
                spec.path.parent,
                spec.datastores,
                what=what,
                hint=how,
                resolver=spec.asset_resolver,
            )
            if not path.exists():
                raise BadInputError(
                    f"{what} path {path} does not exist ({pin.raw}); {how}"
                    + _datastore_hint(pin.raw),
                    code="missing_input",
                )
            inputs[name] = replace(pin, path=path)
        return replace(spec, inputs=inputs)


def _written_by_pipeline(path: Path, written: tuple[Path, ...]) -> bool:
    """Whether ``path`` lies in a datastore folder a step of this pipeline writes. Azure ML
    reads a node's datastore input when the node starts, after the steps it follows have
    written their outputs, so such an input need not exist at submit (the step checks it
    when it starts)."""
    return any(path == folder or folder in path.parents for folder in written)


def _datastore_name(setting: Any) -> str:
    """The datastore a ``settings.default_datastore`` names (``azureml:NAME``, ``NAME`` or a
    datastore id); the workspace default when unset."""
    text = str(setting or "").strip().removeprefix("azureml:").rstrip("/")
    return text.rsplit("/", 1)[-1] or DEFAULT_DATASTORE


def _datastore_hint(raw: str) -> str:
    store = parse_datastore_uri(raw)
    if store is None:
        return ""
    return f", or put the data there or map the datastore with --datastore {store[0]}=LOCAL_DIR"


def normalize_type(kind: str) -> str:
    return _PY_TYPES.get(kind, kind)


def convert_literal(what: str, kind: str, raw: str) -> Any:
    """``raw`` (text from the command line) as a value of declared type ``kind``."""
    kind = normalize_type(kind)
    text = raw.strip()
    if kind == "integer":
        try:
            return int(text)
        except ValueError:
            raise BadInputError(f"{what}: {raw!r} is not an integer", code="bad_value") from None
    if kind == "number":
        try:
            return float(text)
        except ValueError:
            raise BadInputError(f"{what}: {raw!r} is not a number", code="bad_value") from None
    if kind == "boolean":
        if text.lower() in ("true", "false"):
            return text.lower() == "true"
        raise BadInputError(f"{what}: {raw!r} is not true or false", code="bad_value")
    return raw


def _one_line(exc: BaseException) -> str:
    text = " ".join(str(exc).split())
    return text[:400] or type(exc).__name__


# -- the plain-YAML pass ---------------------------------------------------------------------


@dataclass
class _Raw:
    """A pipeline (or pipeline component) YAML as written, with its nested pipeline nodes."""

    path: Path
    doc: dict[str, Any]
    children: dict[str, _Raw] = field(default_factory=dict)
    components: dict[str, dict[str, Any]] = field(default_factory=dict)
    # Nodes whose component (or sweep trial) is a workspace component: its stored YAML.
    registered: dict[str, Path] = field(default_factory=dict)

    def node(self, name: str) -> dict[str, Any]:
        node = (self.doc.get("jobs") or {}).get(name)
        return node if isinstance(node, dict) else {}


def _read_yaml(path: Path, what: str) -> Any:
    import yaml

    try:
        return yaml.safe_load(path.read_text(encoding="utf-8"))
    except yaml.YAMLError as exc:
        raise BadInputError(f"{what}: invalid YAML: {_one_line(exc)}", code="invalid_yaml") from exc


def _component_file(
    raw: _Raw, name: str, reference: str, key: str, components: ComponentResolver | None
) -> Path:
    """The YAML a node's ``component`` (or a sweep's ``trial``) names: a local file, or a
    component registered in the local workspace."""
    if is_component_reference(reference):
        target = resolve_component(reference, what=f"node {name!r}", resolver=components)
        raw.registered[name] = target
        return target
    target = (raw.path.parent / reference.removeprefix("file:")).resolve()
    if not target.is_file():
        raise BadInputError(
            f"node {name!r}: {key} file {reference!r} not found", code="unknown_component"
        )
    return target


def _prescan(path: Path, depth: int = 0, components: ComponentResolver | None = None) -> _Raw:
    """Reject what the executor cannot run before the (slower, vaguer) SDK parse."""
    doc = _read_yaml(path, path.name)
    if not isinstance(doc, dict):
        raise BadInputError(f"{path.name}: not a pipeline job (top level is not a mapping)")
    if str(doc.get("type", "pipeline")) != "pipeline":
        raise BadInputError(f"{path.name}: type {doc.get('type')!r} is not a pipeline job")
    jobs = doc.get("jobs")
    if not isinstance(jobs, dict) or not jobs:
        raise BadInputError(f"{path.name}: a pipeline job needs a non-empty 'jobs' mapping")
    raw = _Raw(path, doc)
    for name, node in jobs.items():
        if not isinstance(node, dict):
            raise BadInputError(f"{path.name}: node {name!r} is not a mapping")
        node_type = str(node.get("type", "command"))
        key = "trial" if node_type == "sweep" else "component"
        component = node.get(key)
        comp: dict[str, Any] = {}
        target: Path | None = None
        if isinstance(component, str):
            target = _component_file(raw, name, component, key, components)
            loaded = _read_yaml(target, f"node {name!r} {key} {component}")
            comp = loaded if isinstance(loaded, dict) else {}
            if node_type != "sweep":
                node_type = str(comp.get("type", node_type)) if isinstance(loaded, dict) else "?"
            raw.components[name] = comp
        elif isinstance(component, dict) and node_type == "sweep":
            comp = component
        if node_type not in SUPPORTED_NODE_TYPES:
            raise BadInputError(
                f"node {name!r} has type {node_type!r}, which the local executor does not run "
                "(supported: command, parallel, pipeline, spark, sweep)",
                code="unsupported_node",
            )
        if node_type == "sweep" and str(comp.get("type", "command")) != "command":
            raise BadInputError(
                f"node {name!r}: a sweep's trial must be a command component, not "
                f"{comp.get('type')!r}",
                code="unsupported_node",
            )
        if node_type == "parallel":
            task = node.get("task") or comp.get("task") or {}
            task_type = str(task.get("type", "run_function")) if isinstance(task, dict) else "?"
            if task_type != "run_function":
                raise BadInputError(
                    f"node {name!r}: parallel task type {task_type!r} is not run locally "
                    "(supported: run_function)",
                    code="unsupported_node",
                )
        if node_type == "pipeline":
            if target is None:
                raise BadInputError(
                    f"node {name!r}: a pipeline node needs 'component: ./FILE.yml' "
                    "(a pipeline component YAML)",
                    code="unsupported_node",
                )
            if depth > 8:
                raise BadInputError(f"node {name!r}: pipeline components nest too deeply")
            raw.children[name] = _prescan(target, depth + 1, components)
    return raw


def _raw_path(binding: Any) -> str | None:
    if isinstance(binding, dict) and isinstance(binding.get("path"), str):
        return str(binding["path"])
    return None


def _ignored(
    name: str, raw_node: Mapping[str, Any], comp: Mapping[str, Any], node_type: str
) -> list[str]:
    lines = []
    for key in IGNORED_NODE_SETTINGS:
        if key == "resources" and node_type == "spark":
            continue  # its runtime_version is used; the rest is said with the Spark notes
        value = raw_node.get(key, comp.get(key))
        if value in (None, {}, []):
            continue
        shown = " ".join(str(value).split())[:120]
        lines.append(
            f"node {name!r}: {key} {shown} is ignored; the step runs on this machine as "
            "one instance"
        )
    return lines


# -- the SDK pass ----------------------------------------------------------------------------


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


def _environment_source(comp: Mapping[str, Any], raw_node: Mapping[str, Any], base: Path) -> str:
    """The conda file a step's environment comes from, when one is named; else ''."""
    task = comp.get("task")
    declared = (
        raw_node.get("environment")
        or comp.get("environment")
        or (task.get("environment") if isinstance(task, Mapping) else None)
    )
    conda = declared.get("conda_file") if isinstance(declared, Mapping) else None
    return str((base / conda).resolve()) if isinstance(conda, str) else ""


def _number(value: Any) -> float | None:
    try:
        return None if value is None else float(value)
    except (TypeError, ValueError):
        return None


def _input_defs(component: Any) -> dict[str, InputDef]:
    defs = {}
    for iname, idef in (component.inputs or {}).items():
        enum = getattr(idef, "enum", None) or ()
        defs[iname] = InputDef(
            type=normalize_type(str(idef.type)),
            default=getattr(idef, "default", None),
            optional=bool(getattr(idef, "optional", False)),
            enum=tuple(str(e) for e in enum),
            min=_number(getattr(idef, "min", None)),
            max=_number(getattr(idef, "max", None)),
        )
    return defs


class _Context:
    def __init__(
        self,
        datastores: Datastores,
        resolver: AssetResolver | None,
        written: tuple[Path, ...] = (),
    ) -> None:
        self.datastores = datastores
        self.resolver = resolver
        # Datastore folders the pipeline's own steps write (its outputs' fixed paths).
        self.written = written
        self.warnings: list[str] = []
        # (pipeline node, its output) -> (inner step, inner output) bound to it.
        self.aliases: dict[tuple[str, str], tuple[str, str]] = {}


def _substitute(binding: Any, prefix: str, inputs_map: Mapping[str, Any] | None) -> Any:
    """A binding written inside a pipeline component, rewritten for the flat step list."""
    if inputs_map is None and not prefix:
        return binding
    if isinstance(binding, dict):
        path = binding.get("path")
        if isinstance(path, str) and _EXPR.search(path):
            new = _substitute(path, prefix, inputs_map)
            if isinstance(new, dict):
                return {**binding, **new}
            return {**binding, "path": new} if isinstance(new, str) else new
        return binding
    if not isinstance(binding, str):
        return binding
    whole = _EXPR.fullmatch(binding.strip())
    if whole and inputs_map is not None:
        parts = whole.group(1).split(".")
        if len(parts) == 3 and parts[:2] == ["parent", "inputs"]:
            return inputs_map.get(parts[2])

    def one(match: re.Match[str]) -> str:
        parts = match.group(1).split(".")
        if len(parts) == 3 and parts[:2] == ["parent", "inputs"] and inputs_map is not None:
            value = inputs_map.get(parts[2])
            if isinstance(value, dict):
                value = value.get("path")
            return "" if value is None else str(value)
        if len(parts) == 5 and parts[:2] == ["parent", "jobs"]:
            return "${{parent.jobs." + prefix + ".".join(parts[2:]) + "}}"
        return match.group(0)

    return _EXPR.sub(one, binding)


def _node_inputs(
    node: Any,
    raw: _Raw,
    raw_node: Mapping[str, Any],
    full: str,
    ctx: _Context,
    prefix: str,
    inputs_map: Mapping[str, Any] | None,
) -> dict[str, Any]:
    """A node's input bindings, with literal data locations resolved to local paths now."""
    raw_inputs: dict[str, Any] = raw_node.get("inputs") or {}
    if not isinstance(raw_inputs, dict):
        raw_inputs = {}
    node_inputs: dict[str, Any] = {}
    for key, value in (node.inputs or {}).items():
        plain = _plain(value)
        if plain is None:
            continue
        written = _raw_path(raw_inputs.get(key))
        if isinstance(plain, dict) and written is not None:
            plain = {**plain, "path": written}
        if isinstance(plain, dict) and isinstance(plain.get("path"), str):
            location = plain["path"]
            if not _EXPR.search(location):
                what = f"node {full!r} input {key!r}"
                hint = (
                    "bind it to a pipeline input and run with --set inputs.NAME=LOCAL_PATH, "
                    "or give the node a local path"
                )
                local = local_input_path(
                    location, raw.path.parent, ctx.datastores,
                    what=what, hint=hint, resolver=ctx.resolver,
                )  # fmt: skip
                if not local.exists() and not _written_by_pipeline(local, ctx.written):
                    raise BadInputError(
                        f"{what} path {local} does not exist ({location}); {hint}"
                        + _datastore_hint(location),
                        code="missing_input",
                    )
                plain = {**plain, "path": str(local)}
        node_inputs[key] = _substitute(plain, prefix, inputs_map)
    return node_inputs


def _node_outputs(
    node: Any, full: str, ctx: _Context, outputs_map: Mapping[str, Any] | None, outer: str
) -> dict[str, Any]:
    """A node's output bindings; inside a pipeline component, bound through to the outer node."""
    node_outputs: dict[str, Any] = {}
    for key, value in (node.outputs or {}).items():
        plain = _plain(value)
        text = plain if isinstance(plain, str) else _raw_path(plain)
        whole = _EXPR.fullmatch(text.strip()) if isinstance(text, str) else None
        parts = whole.group(1).split(".") if whole else []
        if outputs_map is not None and len(parts) == 3 and parts[:2] == ["parent", "outputs"]:
            ctx.aliases[(outer, parts[2])] = (full, key)
            plain = outputs_map.get(parts[2])
        elif isinstance(text, str) and not whole:
            check_output_path(text, what=f"node {full!r} output {key!r}")
        node_outputs[key] = plain
    return node_outputs


def _collect(
    job: Any,
    raw: _Raw,
    ctx: _Context,
    steps: dict[str, StepSpec],
    prefix: str = "",
    inputs_map: Mapping[str, Any] | None = None,
    outputs_map: Mapping[str, Any] | None = None,
    outer: str = "",
) -> None:
    """Add the steps of ``job`` (a pipeline job or pipeline component) to ``steps``."""
    for name, node in job.jobs.items():
        full = prefix + name
        raw_node = raw.node(name)
        comp_raw = raw.components.get(name, {})
        node_type = str(getattr(node, "type", "command"))
        component = node.trial if node_type == "sweep" else node.component
        if name in raw.registered:
            component = _load_component(raw.registered[name], full)
        if isinstance(component, str):
            raise BadInputError(
                f"node {full!r} refers to component {component!r}, which is not a local file",
                code="unsupported_node",
            )
        component_type = str(getattr(component, "type", node_type))
        if component_type not in SUPPORTED_NODE_TYPES:
            # e.g. a prompt flow (flow.dag.yaml) run as a parallel node: "promptflow_parallel".
            raise BadInputError(
                f"node {full!r} runs a {component_type!r} component, which the local executor "
                "does not run (supported: command, parallel run_function, pipeline, spark, sweep)",
                code="unsupported_node",
            )
        if node_type == "pipeline":
            child_inputs: dict[str, Any] = {}
            for iname, idef in (component.inputs or {}).items():
                bound = _plain((node.inputs or {}).get(iname))
                bound = _substitute(bound, prefix, inputs_map) if bound is not None else None
                child_inputs[iname] = bound if bound is not None else getattr(idef, "default", None)
            child_outputs = {
                oname: _substitute(_plain(out), prefix, inputs_map)
                for oname, out in (node.outputs or {}).items()
            }
            _collect(
                component, raw.children[name], ctx, steps, f"{full}/", child_inputs, child_outputs,
                full,
            )  # fmt: skip
            continue
        ctx.warnings.extend(_ignored(full, raw_node, comp_raw, node_type))
        base = Path(str(getattr(component, "base_path", None) or raw.path.parent))
        input_defs = _input_defs(component)
        node_inputs = _node_inputs(node, raw, raw_node, full, ctx, prefix, inputs_map)
        node_outputs = _node_outputs(node, full, ctx, outputs_map, outer)
        env_vars = {
            str(k): str(v)
            for k, v in {
                **(getattr(component, "environment_variables", None) or {}),
                **(getattr(node, "environment_variables", None) or {}),
            }.items()
        }
        parallel = _parallel(full, node, component) if node_type == "parallel" else None
        sweep = _sweep(full, raw_node, input_defs, ctx) if node_type == "sweep" else None
        command, code_dir = _command_and_code(full, node_type, node, component, base)
        spark = None
        if parallel is not None:
            _check_parallel(full, parallel, code_dir or base, input_defs)
        elif node_type == "spark":
            spark = parse_spark(full, node, component, code_dir)
            input_modes_direct(f"node {full!r}", _spark_modes(component, raw_node, raw.doc))
        env = getattr(node, "environment", None) or getattr(component, "environment", None)
        steps[full] = StepSpec(
            name=full,
            command=command,
            code_dir=code_dir,
            inputs=node_inputs,
            outputs=node_outputs,
            input_defs=input_defs,
            output_types={o: str(d.type) for o, d in (component.outputs or {}).items()},
            environment_variables=env_vars,
            timeout_seconds=_timeout(node),
            environment=_environment_name(env),
            kind="spark" if spark else "sweep" if sweep else "parallel" if parallel else "command",
            parallel=parallel,
            sweep=sweep,
            spark=spark,
            environment_decl=env,
            environment_source=_environment_source(comp_raw, raw_node, base),
        )


def _command_and_code(
    full: str, node_type: str, node: Any, component: Any, base: Path
) -> tuple[str, Path | None]:
    """A node's command ('' for parallel and spark nodes, which have none) and the code
    folder Azure ML snapshots for it (None when the component has no ``code``)."""
    command = ""
    if node_type == "parallel":
        task = getattr(node, "task", None) or getattr(component, "task", None)
        code = getattr(task, "code", None)
    elif node_type == "spark":
        code = getattr(component, "code", None) or getattr(node, "code", None)
    else:
        command = str(getattr(component, "command", None) or "").strip()
        if not command:
            raise BadInputError(f"node {full!r} has no command", code="invalid_pipeline")
        code = getattr(component, "code", None)
    code_dir = (base / str(code).removeprefix("file:")).resolve() if code else None
    if code_dir is not None and not code_dir.is_dir():
        raise BadInputError(f"node {full!r}: code folder {str(code)!r} not found")
    return command, code_dir


def _check_parallel(
    full: str, parallel: ParallelSpec, code_dir: Path, input_defs: Mapping[str, InputDef]
) -> None:
    if not (code_dir / parallel.entry_script).is_file():
        raise BadInputError(
            f"node {full!r}: entry_script {parallel.entry_script!r} not found in the "
            "task's code folder",
            code="invalid_pipeline",
        )
    if parallel.input_data not in input_defs:
        raise BadInputError(
            f"node {full!r}: input_data names no input {parallel.input_data!r}",
            code="unresolved_binding",
        )


def _spark_modes(
    component: Any, raw_node: Mapping[str, Any], doc: Mapping[str, Any]
) -> dict[str, str | None]:
    """The mode in force for each path input and each output of a spark node: the node's own
    (``{path, mode}``), else the pipeline input or output it is bound to, else the
    component's declaration; None when none sets one."""
    modes: dict[str, str | None] = {}
    for kind, declared in (("inputs", component.inputs), ("outputs", component.outputs)):
        written, outer_io = raw_node.get(kind), doc.get(kind)
        bound: Mapping[str, Any] = written if isinstance(written, Mapping) else {}
        parent: Mapping[str, Any] = outer_io if isinstance(outer_io, Mapping) else {}
        for name, decl in (declared or {}).items():
            if kind == "inputs" and normalize_type(str(decl.type)) not in PATH_TYPES:
                continue
            binding = bound.get(name)
            if kind == "inputs" and binding is None:
                continue  # an optional input left unbound: nothing is read
            mode = binding.get("mode") if isinstance(binding, Mapping) else None
            text = binding.get("path") if isinstance(binding, Mapping) else binding
            whole = _EXPR.fullmatch(text.strip()) if isinstance(text, str) else None
            parts = whole.group(1).split(".") if whole else []
            if mode is None and len(parts) == 3 and parts[:2] == ["parent", kind]:
                outer = parent.get(parts[2])
                mode = outer.get("mode") if isinstance(outer, Mapping) else None
            if mode is None:
                mode = getattr(decl, "mode", None)
            modes[f"{kind[:-1]} {name!r}"] = None if mode is None else str(mode)
    return modes


def _load_component(path: Path, full: str) -> Any:
    """A component registered in the local workspace, parsed by the SDK from its stored YAML."""
    from azure.ai.ml import load_component

    try:
        return load_component(str(path))
    except Exception as exc:
        raise BadInputError(
            f"node {full!r}: registered component {path.parent.name}: {_one_line(exc)}",
            code="invalid_pipeline",
        ) from exc


def _sweep(
    full: str, raw_node: Mapping[str, Any], input_defs: Mapping[str, InputDef], ctx: _Context
) -> SweepSpec:
    """A sweep node's settings; every search-space parameter must be a trial input."""
    sweep = parse_sweep(f"node {full!r}", raw_node)
    unknown = sorted(set(sweep.search_space) - set(input_defs))
    if unknown:
        raise BadInputError(
            f"node {full!r}: search_space parameter {', '.join(map(repr, unknown))} is not an "
            "input of its trial component",
            code="unresolved_binding",
        )
    ctx.warnings.extend(f"node {full!r}: {note}" for note in sweep.notes())
    return sweep


def _input_name(expr: Any, full: str, what: str) -> str:
    match = _EXPR.fullmatch(str(expr or "").strip())
    parts = match.group(1).split(".") if match else []
    if len(parts) != 2 or parts[0] not in ("inputs", "outputs"):
        raise BadInputError(
            f"node {full!r}: {what} must be ${{{{inputs.NAME}}}} or ${{{{outputs.NAME}}}}, "
            f"got {expr!r}",
            code="invalid_pipeline",
        )
    return parts[1]


def _threshold(value: Any) -> int:
    """A failure threshold; ``-1`` (Azure ML's default) tolerates any number."""
    return -1 if value in (None, "") else int(value)


def _parallel(full: str, node: Any, component: Any) -> ParallelSpec:
    def pick(attr: str) -> Any:
        value = getattr(node, attr, None)
        return value if value is not None else getattr(component, attr, None)

    task = pick("task")
    if task is None or not getattr(task, "entry_script", None):
        raise BadInputError(
            f"node {full!r}: a parallel node needs task.entry_script", code="invalid_pipeline"
        )
    retry = pick("retry_settings")
    tries = getattr(retry, "max_retries", None) if retry is not None else None
    timeout = getattr(retry, "timeout", None) if retry is not None else None
    append = getattr(task, "append_row_to", None)
    size = pick("mini_batch_size")
    return ParallelSpec(
        input_data=_input_name(pick("input_data"), full, "input_data"),
        entry_script=str(task.entry_script),
        program_arguments=" ".join(str(getattr(task, "program_arguments", "") or "").split()),
        append_row_to=_input_name(append, full, "append_row_to") if append else "",
        mini_batch_size=int(size) if size not in (None, "") else None,
        partition_keys=tuple(str(k) for k in (pick("partition_keys") or ())),
        max_concurrency=max(1, int(pick("max_concurrency_per_instance") or 1)),
        max_tries=max(1, int(tries)) if tries not in (None, "") else DEFAULT_MAX_TRIES,
        run_timeout=float(timeout) if timeout not in (None, "") else DEFAULT_RUN_TIMEOUT,
        mini_batch_error_threshold=_threshold(pick("mini_batch_error_threshold")),
        error_threshold=_threshold(pick("error_threshold")),
    )


def _rewrite_aliases(
    steps: dict[str, StepSpec], aliases: dict[tuple[str, str], tuple[str, str]]
) -> None:
    """``${{parent.jobs.P.outputs.O}}`` of a pipeline node → the inner step that writes O."""
    if not aliases:
        return

    def target(step: str, output: str) -> tuple[str, str]:
        seen = 0
        while (step, output) in aliases and seen < 32:
            step, output = aliases[(step, output)]
            seen += 1
        return step, output

    def fix(text: str) -> str:
        def one(match: re.Match[str]) -> str:
            parts = match.group(1).split(".")
            if len(parts) == 5 and parts[:2] == ["parent", "jobs"] and parts[3] == "outputs":
                step, output = target(parts[2], parts[4])
                return "${{parent.jobs." + step + ".outputs." + output + "}}"
            return match.group(0)

        return _EXPR.sub(one, text)

    for name, spec in list(steps.items()):
        inputs: dict[str, Any] = {}
        for key, binding in spec.inputs.items():
            if isinstance(binding, str):
                inputs[key] = fix(binding)
            elif isinstance(binding, dict) and isinstance(binding.get("path"), str):
                inputs[key] = {**binding, "path": fix(binding["path"])}
            else:
                inputs[key] = binding
        steps[name] = replace(spec, inputs=inputs)


def load_pipeline(
    path: str | Path,
    *,
    datastores: Datastores | None = None,
    asset_resolver: AssetResolver | None = None,
    component_resolver: ComponentResolver | None = None,
) -> PipelineSpec:
    """Parse ``path`` offline; raise ``BadInputError`` (one line) for anything not runnable.

    Node-level data references are resolved here (they cannot be overridden); pipeline
    inputs keep their location as written until ``PipelineSpec.bind``. Components referred to
    as ``azureml:NAME:VERSION`` / ``azureml:NAME@latest`` are read from the local workspace
    through ``component_resolver`` (without one, or when it does not know them, refused).
    """
    yaml_path = Path(path).resolve()
    if not yaml_path.is_file():
        raise BadInputError(f"pipeline file {path} not found", code="not_found")
    raw = _prescan(yaml_path, components=component_resolver)
    from azure.ai.ml import load_job

    # Parsing instantiates schema classes azure-ai-ml marks experimental, and it warns about
    # each one on stderr; that says nothing about the user's pipeline.
    logging.getLogger("azure.ai.ml._utils._experimental").setLevel(logging.ERROR)

    try:
        job: Any = load_job(str(yaml_path))
    except Exception as exc:
        raise BadInputError(f"{yaml_path.name}: {_one_line(exc)}", code="invalid_pipeline") from exc

    stores = datastores or Datastores(DEFAULT_ROOT / "datastores")
    raw_inputs: dict[str, Any] = raw.doc.get("inputs") or {}
    if not isinstance(raw_inputs, dict):
        raw_inputs = {}
    inputs: dict[str, PipelineInput] = {}
    for name, pin in (job.inputs or {}).items():
        data = _plain(pin)
        if isinstance(data, dict):
            kind = normalize_type(str(data.get("type", "string")))
            if kind in PATH_TYPES:
                written = _raw_path(raw_inputs.get(name)) or data.get("path")
                inputs[name] = PipelineInput(
                    type=kind,
                    raw=None if written is None else str(written),
                    optional=written is None,
                )
            else:
                inputs[name] = PipelineInput(
                    type=kind, value=data.get("default", data.get("value"))
                )
        else:
            inputs[name] = PipelineInput(type=normalize_type(type(data).__name__), value=data)
    outputs: dict[str, str] = {}
    locations: dict[str, str] = {}
    for name, out in (job.outputs or {}).items():
        data = _plain(out) or {}
        outputs[name] = str(data.get("type", "uri_folder"))
        if isinstance(data.get("path"), str):
            check_output_path(data["path"], what=f"pipeline output {name!r}")
            locations[name] = str(data["path"])

    written = tuple(
        stores.path_of(*store)
        for location in locations.values()
        if not _EXPR.search(location) and (store := parse_datastore_uri(location)) is not None
    )
    ctx = _Context(stores, asset_resolver, written)
    steps: dict[str, StepSpec] = {}
    _collect(job, raw, ctx, steps)
    _rewrite_aliases(steps, ctx.aliases)

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
        output_locations=locations,
        default_datastore=_datastore_name(getattr(settings, "default_datastore", None)),
        warnings=tuple(ctx.warnings),
        datastores=stores,
        asset_resolver=asset_resolver,
    )
