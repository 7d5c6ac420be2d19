"""Resolving ``${{...}}`` bindings: pure functions over plain data.

Two kinds of expression appear in a pipeline. Node bindings (``${{parent.inputs.X}}``,
``${{parent.jobs.S.outputs.O}}``) connect a step to pipeline inputs and to other steps;
command placeholders (``${{inputs.X}}``, ``${{outputs.O}}``) are filled from the step's
resolved values. ``$[[ ... ]]`` marks an optional part of a command that is dropped when an
input it mentions has no value, as Azure ML does.
"""

from __future__ import annotations

import re
import shlex
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from adapters.errors import BadInputError
from local.aml.locations import (
    DEFAULT_DATASTORE,
    Datastores,
    default_output_path,
    local_output_path,
)
from local.aml.spec import PATH_TYPES, InputDef, PipelineInput, StepSpec

_EXPR = re.compile(r"\$\{\{\s*([^}]+?)\s*\}\}")
_OPTIONAL = re.compile(r"\$\[\[(.*?)\]\]", re.DOTALL)


class UnresolvedBindingError(BadInputError):
    """A ``${{...}}`` expression names something that does not exist or has no value."""

    def __init__(self, message: str) -> None:
        super().__init__(message, code="unresolved_binding")


def render_value(value: Any) -> str:
    """How a value appears on a command line (Azure ML writes booleans as True/False)."""
    if isinstance(value, Path):
        return str(value)
    return str(value)


def _lookup(
    expr: str,
    step: str,
    pipeline_inputs: Mapping[str, PipelineInput],
    step_outputs: Mapping[str, Mapping[str, Path]],
) -> Any:
    parts = expr.split(".")
    if len(parts) == 3 and parts[:2] == ["parent", "inputs"]:
        pin = pipeline_inputs.get(parts[2])
        if pin is None:
            raise UnresolvedBindingError(
                f"step {step!r}: ${{{{{expr}}}}} names no pipeline input {parts[2]!r}"
            )
        return pin.path if pin.is_path else pin.value
    if len(parts) == 5 and parts[:2] == ["parent", "jobs"] and parts[3] == "outputs":
        outputs = step_outputs.get(parts[2])
        if outputs is None:
            raise UnresolvedBindingError(
                f"step {step!r}: ${{{{{expr}}}}} names no step {parts[2]!r}"
            )
        if parts[4] not in outputs:
            raise UnresolvedBindingError(
                f"step {step!r}: ${{{{{expr}}}}}: step {parts[2]!r} has no output {parts[4]!r}"
            )
        return outputs[parts[4]]
    raise UnresolvedBindingError(f"step {step!r}: unsupported binding ${{{{{expr}}}}}")


def resolve_binding(
    binding: Any,
    step: str,
    base_dir: Path,
    pipeline_inputs: Mapping[str, PipelineInput],
    step_outputs: Mapping[str, Mapping[str, Path]],
) -> Any:
    """The concrete value of one node input binding (a path, a literal or None)."""
    if isinstance(binding, dict):
        raw = binding.get("path")
        if raw is None:
            return binding.get("default")
        text = str(raw)
        if _EXPR.search(text):
            return resolve_binding(text, step, base_dir, pipeline_inputs, step_outputs)
        return (base_dir / text.removeprefix("file:")).resolve()
    if isinstance(binding, str):
        whole = _EXPR.fullmatch(binding.strip())
        if whole:
            return _lookup(whole.group(1), step, pipeline_inputs, step_outputs)
        if _EXPR.search(binding):
            return _EXPR.sub(
                lambda m: render_value(_lookup(m.group(1), step, pipeline_inputs, step_outputs)),
                binding,
            )
    return binding


def resolve_step_inputs(
    spec: StepSpec,
    base_dir: Path,
    pipeline_inputs: Mapping[str, PipelineInput],
    step_outputs: Mapping[str, Mapping[str, Path]],
) -> dict[str, Any]:
    """Every declared input of ``spec`` → its value; ``None`` only for optional inputs.

    Raises ``UnresolvedBindingError`` for a required input with no binding and no default,
    for a binding to an unknown step/output/input, and for a node input the component does
    not declare. Path inputs must exist on disk (``BadInputError`` naming the path otherwise).
    """
    unknown = sorted(set(spec.inputs) - set(spec.input_defs))
    if unknown:
        raise UnresolvedBindingError(
            f"step {spec.name!r}: component declares no input named {', '.join(unknown)}"
        )
    values: dict[str, Any] = {}
    for name, idef in spec.input_defs.items():
        value = None
        if name in spec.inputs:
            value = resolve_binding(
                spec.inputs[name], spec.name, base_dir, pipeline_inputs, step_outputs
            )
        if value is None:
            value = idef.default
        if value is None and not idef.optional:
            raise UnresolvedBindingError(
                f"step {spec.name!r}: required input {name!r} has no value (no binding, no default)"
            )
        check_value(spec.name, name, idef, value)
        values[name] = value
    return values


def _is_boolean(value: Any) -> bool:
    return isinstance(value, bool) or str(value).strip().lower() in ("true", "false")


def check_value(step: str, name: str, idef: InputDef, value: Any) -> None:
    """Raise ``BadInputError`` when ``value`` breaks input ``name``'s declared type, ``enum``,
    ``min`` or ``max`` (paths and missing optional values are not checked here)."""
    if value is None or idef.type in PATH_TYPES:
        return
    what = f"node {step!r} input {name!r}"
    number: float | None = None
    if idef.type == "integer":
        text = str(value).strip()
        if isinstance(value, bool) or (isinstance(value, float) and not value.is_integer()):
            raise BadInputError(f"{what} is {value!r}, not an integer", code="bad_value")
        try:
            number = float(int(float(text))) if isinstance(value, float) else float(int(text))
        except ValueError:
            raise BadInputError(f"{what} is {value!r}, not an integer", code="bad_value") from None
    elif idef.type == "number":
        if isinstance(value, bool):
            raise BadInputError(f"{what} is {value!r}, not a number", code="bad_value")
        try:
            number = float(str(value).strip())
        except ValueError:
            raise BadInputError(f"{what} is {value!r}, not a number", code="bad_value") from None
    elif idef.type == "boolean" and not _is_boolean(value):
        raise BadInputError(f"{what} is {value!r}, not true or false", code="bad_value")
    if idef.enum and render_value(value) not in idef.enum:
        raise BadInputError(
            f"{what} is {render_value(value)!r}, not one of "
            + ", ".join(repr(choice) for choice in idef.enum),
            code="bad_value",
        )
    if number is not None and idef.min is not None and number < idef.min:
        raise BadInputError(f"{what} is {value}, below its min {idef.min:g}", code="bad_value")
    if number is not None and idef.max is not None and number > idef.max:
        raise BadInputError(f"{what} is {value}, above its max {idef.max:g}", code="bad_value")


def check_constraints(steps: Mapping[str, StepSpec], inputs: Mapping[str, PipelineInput]) -> None:
    """Check every input value known before the run (literals and pipeline inputs) against
    its declared constraints; values produced by steps are checked when the step starts."""
    for spec in steps.values():
        unknown = sorted(set(spec.inputs) - set(spec.input_defs))
        if unknown:
            raise UnresolvedBindingError(
                f"step {spec.name!r}: component declares no input named {', '.join(unknown)}"
            )
        for name, idef in spec.input_defs.items():
            binding = spec.inputs.get(name)
            if binding is None:
                value = idef.default
            elif isinstance(binding, str) and _EXPR.search(binding):
                whole = _EXPR.fullmatch(binding.strip())
                parts = whole.group(1).split(".") if whole else []
                if len(parts) != 3 or parts[:2] != ["parent", "inputs"]:
                    continue
                pin = inputs.get(parts[2])
                if pin is None or pin.is_path:
                    continue
                value = pin.value if pin.value is not None else idef.default
            elif isinstance(binding, dict):
                continue
            else:
                value = binding
            check_value(spec.name, name, idef, value)


def check_input_paths(spec: StepSpec, values: Mapping[str, Any], produced: set[Path]) -> None:
    """Raise ``BadInputError`` when a path input does not exist (and no step produces it)."""
    for name, value in values.items():
        idef = spec.input_defs[name]
        if idef.type in PATH_TYPES and value is not None:
            path = Path(value)
            if path not in produced and not path.exists():
                raise BadInputError(
                    f"step {spec.name!r}: input {name!r} path {path} does not exist",
                    code="missing_input",
                )


# Characters that make a command a shell program (pipes, lists, redirections, expansions,
# globs, comments) when they appear unquoted.
_SHELL_CHARS = frozenset("|&;<>()$`*?[]{}~#!\n")


def _quote(value: str, state: str) -> str:
    """``value`` as literal text at a point of a shell command in quoting ``state``."""
    if state == "'":
        return value.replace("'", "'\\''")
    if state == '"':
        return "".join("\\" + c if c in '\\"$`' else c for c in value)
    return shlex.quote(value) if value else "''"


def _states(text: str) -> list[str]:
    """The quoting state ('', "'" or '"') in force before each character of ``text``."""
    states: list[str] = []
    state = ""
    escaped = False
    for char in text:
        states.append(state)
        if escaped:
            escaped = False
        elif state == "'":
            if char == "'":
                state = ""
        elif char == "\\":
            escaped = True
        elif state == '"':
            if char == '"':
                state = ""
        elif char in "'\"":
            state = char
    return states


def needs_shell(command: str) -> bool:
    """True when ``command`` uses shell syntax (outside quotes) and must run under bash.

    Substituted values are quoted by ``render_command``, so only what the author wrote can
    make a command a shell program; a plain ``python step.py --x ...`` runs without one.
    """
    state = ""
    escaped = False
    for char in command:
        if escaped:
            escaped = False
            continue
        if state == "'":
            if char == "'":
                state = ""
            continue
        if char == "\\":
            if state == '"':
                # Inside "…" bash and shell-word splitting disagree on escapes: let bash read it.
                return True
            escaped = True
        elif state == '"':
            if char == '"':
                state = ""
            elif char in "$`":
                return True
        elif char in "'\"":
            state = char
        elif char in _SHELL_CHARS:
            return True
    return False


def command_argv(command: str) -> list[str]:
    """How to start ``command``: its words (shell-word rules) or ``bash -c`` when it needs one."""
    if needs_shell(command):
        return ["/bin/bash", "-c", command]
    try:
        words = shlex.split(command)
    except ValueError:
        return ["/bin/bash", "-c", command]
    return words or ["/bin/true"]


def render_command(
    command: str, inputs: Mapping[str, Any], outputs: Mapping[str, Path], step: str = "?"
) -> str:
    """Fill ``${{inputs.X}}`` / ``${{outputs.O}}``; drop ``$[[...]]`` parts with missing inputs.

    Every substituted value is quoted for the place it lands in (bare, inside '…' or inside
    "…"), so a value with spaces, ``$``, ``&``, quotes or ``;`` is one literal word and can
    never become shell syntax, whether the command then runs under bash or not.
    """

    def value_of(expr: str) -> Any:
        kind, _, name = expr.partition(".")
        if kind == "inputs":
            if name not in inputs:
                raise UnresolvedBindingError(f"step {step!r}: command uses unknown ${{{{{expr}}}}}")
            return inputs[name]
        if kind == "outputs":
            if name not in outputs:
                raise UnresolvedBindingError(f"step {step!r}: command uses unknown ${{{{{expr}}}}}")
            return outputs[name]
        raise UnresolvedBindingError(f"step {step!r}: command uses unsupported ${{{{{expr}}}}}")

    def optional(match: re.Match[str]) -> str:
        body = match.group(1)
        names = _EXPR.findall(body)
        # An optional part may mention an input the component does not declare: drop it.
        if any(e.partition(".")[2] not in inputs and e.startswith("inputs.") for e in names):
            return ""
        if any(value_of(e) is None for e in names):
            return ""
        return body

    text = _OPTIONAL.sub(optional, command)
    states = _states(text)
    parts: list[str] = []
    last = 0
    for match in _EXPR.finditer(text):
        value = value_of(match.group(1))
        if value is None:
            raise UnresolvedBindingError(
                f"step {step!r}: ${{{{{match.group(1)}}}}} has no value outside $[[...]]"
            )
        parts.append(text[last : match.start()])
        parts.append(_quote(render_value(value), states[match.start()]))
        last = match.end()
    parts.append(text[last:])
    return "".join(parts)


def render_arguments(
    arguments: str, inputs: Mapping[str, Any], outputs: Mapping[str, Path], step: str = "?"
) -> list[str]:
    """A parallel task's ``program_arguments`` as argv words (values never split or expanded)."""
    rendered = render_command(arguments, inputs, outputs, step)
    try:
        return shlex.split(rendered)
    except ValueError as exc:
        raise BadInputError(f"step {step!r}: program_arguments: {exc}") from exc


def step_job_name(pipeline_job: str, step: str) -> str:
    """The job name of pipeline step ``step``: Azure ML gives every node of a pipeline job a
    child job of its own; locally it is the pipeline's name and the node's path."""
    return f"{pipeline_job}_{re.sub(r'[^A-Za-z0-9_-]', '_', step)}"


def output_paths(
    spec: StepSpec,
    *,
    datastores: Datastores,
    job_name: str,
    step_job: str,
    pipeline_locations: Mapping[str, str] | None = None,
    default_datastore: str = DEFAULT_DATASTORE,
) -> dict[str, Path]:
    """Where each declared output of ``spec`` lives.

    Folder-like outputs are directories; a ``uri_file`` output is a file inside its own
    directory (as on Azure ML, where the path names a file). An output with an explicit
    datastore ``path`` — on the node, or on the pipeline output it is bound to — lives in that
    datastore folder (``${{name}}`` there is ``job_name``); any other output lives where Azure
    ML puts it, ``azureml/<step_job>/<output>/`` on the default datastore (never in the
    source tree).
    """
    locations = pipeline_locations or {}
    paths: dict[str, Path] = {}
    for name, kind in spec.output_types.items():
        binding = spec.outputs.get(name)
        text = binding if isinstance(binding, str) else None
        explicit = binding.get("path") if isinstance(binding, dict) else None
        if isinstance(explicit, str) and _EXPR.fullmatch(explicit.strip()):
            # "${{parent.outputs.P}}" in the long form is a binding, not a location.
            text, explicit = explicit, None
        whole = _EXPR.fullmatch(text.strip()) if text else None
        parts = whole.group(1).split(".") if whole else []
        if len(parts) == 3 and parts[:2] == ["parent", "outputs"] and parts[2] in locations:
            explicit = locations[parts[2]]
        if explicit:
            paths[name] = local_output_path(
                str(explicit), datastores, job_name=job_name, output_name=name,
                what=f"step {spec.name!r} output {name!r}", default_datastore=default_datastore,
            )  # fmt: skip
            continue
        folder = default_output_path(
            datastores, job_name=step_job, output_name=name, default_datastore=default_datastore
        )
        paths[name] = folder / name if kind == "uri_file" else folder
    return paths


def pipeline_output_sources(steps: Mapping[str, StepSpec]) -> dict[str, tuple[str, str]]:
    """Pipeline output name → (step, output) bound through ``${{parent.outputs.P}}``."""
    sources: dict[str, tuple[str, str]] = {}
    for step in steps.values():
        for name, binding in step.outputs.items():
            text = binding if isinstance(binding, str) else None
            if isinstance(binding, dict) and isinstance(binding.get("path"), str):
                text = binding["path"]
            match = _EXPR.fullmatch(text.strip()) if text else None
            if match:
                parts = match.group(1).split(".")
                if len(parts) == 3 and parts[:2] == ["parent", "outputs"]:
                    sources[parts[2]] = (step.name, name)
    return sources


def topological_order(steps: Mapping[str, StepSpec]) -> list[str]:
    """Step names in an order where every step follows the steps it consumes.

    Raises ``UnresolvedBindingError`` for a dependency on an unknown step and
    ``BadInputError`` for a cycle.
    """
    deps = {name: spec.dependencies() for name, spec in steps.items()}
    for name, needs in deps.items():
        missing = sorted(needs - set(steps))
        if missing:
            raise UnresolvedBindingError(f"step {name!r} consumes unknown step {missing[0]!r}")
    order: list[str] = []
    done: set[str] = set()
    while len(order) < len(steps):
        ready = sorted(n for n in steps if n not in done and deps[n] <= done)
        if not ready:
            cycle = sorted(n for n in steps if n not in done)
            raise BadInputError(f"steps {', '.join(cycle)} depend on each other in a cycle")
        order.extend(ready)
        done.update(ready)
    return order
