"""Where a pipeline's data lives on this machine: local paths, datastores, and what cannot be.

Azure ML reads inputs from local files it uploads, from datastores
(``azureml://datastores/NAME/paths/P``), from data assets (``azureml:NAME:VERSION``,
``azureml:NAME@latest``) and from web URLs; it writes outputs only to datastores. Locally:

- a relative or ``file:`` path is a path next to the YAML that declares it;
- a datastore URI maps to a folder under a local datastore root (``Datastores``), each
  datastore a sub-folder unless mapped elsewhere, never into the source tree;
- a data asset goes through ``resolve_asset_input`` — the one place a local asset index can
  plug in (``AssetResolver``); without one it is refused with a line saying how to run locally;
- anything else (``https://``, ``wasbs://``, ``abfss://`` …) is refused at submit with one line
  that names the input and says how to run it locally.

Pure functions over strings and paths (no I/O except ``Path.resolve``).
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path

from adapters.errors import BadInputError

# Azure ML's datastore URIs: the short form and the fully qualified one.
_DATASTORE = re.compile(
    r"^azureml://(?:subscriptions/[^/]+/resource[gG]roups/[^/]+/(?:providers/"
    r"Microsoft\.MachineLearningServices/)?workspaces/[^/]+/)?datastores/(?P<store>[^/]+)"
    r"/paths/?(?P<path>.*)$"
)
_URL = re.compile(r"^[A-Za-z][A-Za-z0-9+.-]*://")
# azureml:NAME:VERSION, azureml:NAME@LABEL, and the long asset-id forms.
_ASSET_SHORT = re.compile(
    r"^azureml:(?!//)(?P<name>[^:@/]+)(?:(?::(?P<version>[^:@/]+))|@(?P<label>[^:@/]+))?$"
)
_ASSET_LONG = re.compile(
    r"^azureml://(?:.*/)?data/(?P<name>[^/]+)"
    r"(?:/(?:versions/(?P<version>[^/]+)|labels/(?P<label>[^/]+)))?/?$"
)
# Component references: azureml:NAME:VERSION, azureml:NAME@LABEL, and the long asset ids of a
# workspace (azureml://subscriptions/.../workspaces/W/components/...) or a registry.
_COMPONENT_LONG = re.compile(
    r"^azureml://(?P<scope>.*/)?components/(?P<name>[^/]+)"
    r"(?:/(?:versions/(?P<version>[^/]+)|labels/(?P<label>[^/]+)))?/?$"
)
_REGISTRY = re.compile(r"^(?:.*/)?registries/(?P<registry>[^/]+)/")
# Runtime expressions Azure ML fills in output paths.
_OUTPUT_EXPR = re.compile(r"\$\{\{\s*(name|output_name|default_datastore)\s*\}\}")
DEFAULT_DATASTORE = "workspaceblobstore"
# Where Azure ML writes an output that names no path: the default datastore, under
# ``azureml/<the step's job name>/<output name>/``. A workspace that has run jobs therefore
# has that folder, and examples read from it.
DEFAULT_OUTPUT_PATH = (
    "azureml://datastores/${{default_datastore}}/paths/azureml/${{name}}/${{output_name}}/"
)

AssetResolver = Callable[[str, str], Path | str | None]
"""``resolver(name, version_or_"latest")`` → the local folder of a data asset, the location it
was registered over when that is not a local path (a datastore URI, a URL), or ``None``."""
ComponentResolver = Callable[[str, str], Path | None]
"""``resolver(name, version_or_"latest")`` → the YAML of a registered component, or ``None``."""
REGISTER_COMPONENT_HINT = (
    "register it first with python -m local.aml component create --file COMPONENT.yml "
    "(the local az ml component create)"
)


@dataclass(frozen=True)
class Datastores:
    """The local stand-in for a workspace's datastores.

    ``root/NAME/...`` holds datastore ``NAME`` unless ``mapping`` points ``NAME`` at another
    folder (``--datastore NAME=DIR`` on the command line).
    """

    root: Path
    mapping: Mapping[str, Path] = field(default_factory=dict)

    def folder(self, store: str) -> Path:
        mapped = self.mapping.get(store)
        return Path(mapped).resolve() if mapped is not None else (self.root / store).resolve()

    def path_of(self, store: str, relative: str) -> Path:
        base = self.folder(store)
        target = (base / relative.strip("/")).resolve() if relative.strip("/") else base
        if target != base and base not in target.parents:
            raise BadInputError(
                f"datastore path {relative!r} leaves datastore {store!r}", code="unsupported_input"
            )
        return target


def parse_datastore_uri(text: str) -> tuple[str, str] | None:
    """``(datastore, path)`` for an ``azureml://…datastores/NAME/paths/P`` URI, else None."""
    match = _DATASTORE.match(text.strip())
    if match is None:
        return None
    return match.group("store"), match.group("path")


def is_asset_reference(text: str) -> bool:
    stripped = text.strip()
    if stripped.startswith("azureml://"):
        return parse_datastore_uri(stripped) is None
    return stripped.startswith("azureml:")


def is_component_reference(text: str) -> bool:
    return str(text).strip().startswith("azureml:")


def resolve_component(
    reference: str, *, what: str, resolver: ComponentResolver | None = None
) -> Path:
    """The local YAML of workspace component ``reference`` (``azureml:NAME:VERSION``,
    ``azureml:NAME@latest``, or a workspace's long asset id) used by ``what`` (a node).

    Raises ``BadInputError`` in one line naming ``what`` and the component when it comes from
    a registry, or when it is not registered in the local workspace (``resolver``).
    """
    text = str(reference).strip()
    short = _ASSET_SHORT.match(text)
    long = None if short else _COMPONENT_LONG.match(text)
    match = short or long
    if long is not None:
        registry = _REGISTRY.match(long.group("scope") or "")
        if registry is not None:
            raise BadInputError(
                f"{what} uses component {text!r} from registry {registry.group('registry')!r}, "
                "which the local executor cannot fetch; use a local component YAML, or register "
                "a copy in the local workspace and refer to it as azureml:NAME:VERSION",
                code="unsupported_node",
            )
    if match is None:
        raise BadInputError(
            f"{what} uses component {text!r}, which is not a component reference the local "
            "executor reads (azureml:NAME:VERSION, azureml:NAME@latest or a local YAML)",
            code="unsupported_node",
        )
    name = match.group("name")
    version = match.group("version") or match.group("label") or "latest"
    found = resolver(name, version) if resolver is not None else None
    if found is None:
        raise BadInputError(
            f"{what} uses component {name}:{version} ({text}), which is not registered in the "
            f"local workspace; {REGISTER_COMPONENT_HINT}",
            code="unknown_component",
        )
    return Path(found)


def resolve_asset_input(
    reference: str,
    *,
    what: str,
    hint: str,
    resolver: AssetResolver | None = None,
    datastores: Datastores | None = None,
) -> Path:
    """The local folder of data asset ``reference`` for input ``what``.

    Every ``azureml:`` data reference goes through here. With a ``resolver`` (a local asset
    index) the asset's folder is returned when it knows it — an asset registered over a
    datastore URI is read from ``datastores`` — otherwise (or for an asset over a web URL)
    ``BadInputError`` names the input, the asset, and ``hint`` (how to run it locally).
    """
    text = reference.strip()
    match = _ASSET_SHORT.match(text) or _ASSET_LONG.match(text)
    name = match.group("name") if match else text
    version = (match.group("version") or match.group("label") or "latest") if match else "latest"
    if resolver is not None and match is not None:
        found = resolver(name, version)
        if isinstance(found, Path):
            return found.resolve()
        if isinstance(found, str):
            store = parse_datastore_uri(found)
            if store is not None and datastores is not None:
                return datastores.path_of(*store)
            scheme = found.split(":", 1)[0]
            raise BadInputError(
                f"{what} refers to data asset {name}:{version} ({text}), registered over "
                f"{found}, a {scheme}:// location the local executor does not download; {hint}",
                code="unsupported_input",
            )
    shown = f"{name}:{version}" if match else text
    where = (
        "is not registered in the local workspace (python -m local.aml data create registers "
        "it, as az ml data create does in Azure)"
        if resolver is not None
        else "lives in a workspace the local executor cannot fetch from"
    )
    raise BadInputError(
        f"{what} refers to data asset {shown} ({text}), which {where}; {hint}",
        code="unsupported_input",
    )


def local_input_path(
    raw: str,
    base_dir: Path,
    datastores: Datastores,
    *,
    what: str,
    hint: str,
    resolver: AssetResolver | None = None,
) -> Path:
    """The local path an input's ``path`` stands for, or ``BadInputError`` at submit.

    ``what`` names the input in the message ("pipeline input 'data'", "node 'x' input 'y'");
    ``hint`` says how to run it locally instead.
    """
    text = str(raw).strip()
    store = parse_datastore_uri(text)
    if store is not None:
        return datastores.path_of(*store)
    if is_asset_reference(text):
        return resolve_asset_input(
            text, what=what, hint=hint, resolver=resolver, datastores=datastores
        )
    if text.startswith("file://"):
        return Path(text.removeprefix("file://")).resolve()
    if _URL.match(text):
        scheme = text.split(":", 1)[0]
        raise BadInputError(
            f"{what} reads {text}, a {scheme}:// location the local executor does not download; "
            f"{hint}",
            code="unsupported_input",
        )
    return (base_dir / text.removeprefix("file:")).resolve()


def local_output_path(
    raw: str,
    datastores: Datastores,
    *,
    job_name: str,
    output_name: str,
    what: str,
    default_datastore: str = DEFAULT_DATASTORE,
) -> Path:
    """Where an output is written: its datastore folder.

    Azure ML writes outputs only to datastores, so anything but a datastore URI is refused
    (a local path would write into the source tree). ``${{name}}``, ``${{output_name}}`` and
    ``${{default_datastore}}`` are filled as Azure ML fills them.
    """
    values = {"name": job_name, "output_name": output_name, "default_datastore": default_datastore}
    text = _OUTPUT_EXPR.sub(lambda m: values[m.group(1)], str(raw).strip())
    store = parse_datastore_uri(text)
    if store is None:
        raise BadInputError(
            f"{what} path {raw!r} is not a datastore URI; Azure ML writes outputs only to "
            "datastores (azureml://datastores/NAME/paths/P), which run locally under the "
            "executor's datastore root",
            code="unsupported_output",
        )
    return datastores.path_of(*store)


def default_output_path(
    datastores: Datastores, *, job_name: str, output_name: str, default_datastore: str
) -> Path:
    """Where an output that names no path is written (``DEFAULT_OUTPUT_PATH``): the
    ``azureml/JOB/OUTPUT`` folder of the default datastore, ``job_name`` being the step's own
    job."""
    return local_output_path(
        DEFAULT_OUTPUT_PATH,
        datastores,
        job_name=job_name,
        output_name=output_name,
        what=f"output {output_name!r}",
        default_datastore=default_datastore,
    )


def check_output_path(raw: str, *, what: str) -> None:
    """Refuse at submit an output path that is not a datastore URI (see ``local_output_path``)."""
    nowhere = Datastores(Path("/nonexistent"))
    local_output_path(raw, nowhere, job_name="x", output_name="x", what=what)
