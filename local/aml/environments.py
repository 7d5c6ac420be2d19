"""Step environments: what a component's ``environment`` means on this machine, built once.

Azure ML runs every step in the environment its component declares: a Docker image with a
conda environment built from the component's conda file, a curated environment, or a
registered one. The local executor does the same with virtualenvs built from the machine's
Python (``resolve_environment`` turns the declaration into an ``EnvironmentSpec``;
``EnvironmentCache.ensure`` builds it once and reuses it):

- a conda file: its ``pip:`` section, plus conda packages mapped to their PyPI names where
  one exists (``CONDA_TO_PYPI``); packages with no PyPI equivalent (compilers, CUDA, MKL …)
  are skipped with a note;
- a curated environment (``azureml://registries/azureml/environments/NAME/…``, an image
  ``mcr.microsoft.com/azureml/curated/NAME``, or an old ``AzureML-NAME`` alias): the package
  set of ``local.aml.curated``;
- a registered environment (``azureml:NAME:VERSION``, ``azureml:NAME@latest``): its definition
  in the local workspace (``python -m local.aml environment create``);
- an image with nothing else: a bare environment, as the image's own Python would be for job
  code (the image's system packages are not reproduced);
- a Docker build context, or a GPU image: refused at submit with one line.

A virtualenv is keyed by the content of its requirements and the indexes they come from, so
two components declaring the same packages share one. Builds use ``uv`` when it is installed
(it ships with the project's tooling) and ``pip`` otherwise, with the machine's pip settings
(index, extra indexes, find-links, constraints: a mirror or a local wheel folder works as it
does for pip). A package that cannot be installed fails the submit with ``StepEnvironmentError``
naming the package, the installer's own message and the file that asked for it. A requested
Python version other than the machine's is a warning, never a refusal.
"""

from __future__ import annotations

import contextlib
import fcntl
import functools
import hashlib
import json
import os
import re
import shlex
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

import yaml

from adapters.errors import BadInputError, NotFoundError
from local.aml.curated import CuratedEnvironment, find_curated, is_gpu_image
from local.aml.store import REPO_ROOT

DEFAULT_CACHE = REPO_ROOT / ".local" / "envs"
# Bump when the way environments are built changes, so old builds are not reused.
# 2: packages are installed with their bytecode compiled.
BUILDER_VERSION = "2"
BUILD_TIMEOUT_SECONDS = 900.0
MACHINE_PYTHON = f"{sys.version_info.major}.{sys.version_info.minor}"
# The name azure.ai.ml gives an environment declared inline in a component.
ANONYMOUS = "CliV2AnonymousEnvironment"

Progress = Callable[[str], None]

# Conda package names whose PyPI distribution is called differently.
CONDA_TO_PYPI: dict[str, str] = {
    "pytorch": "torch",
    "pytorch-cpu": "torch",
    "py-xgboost": "xgboost",
    "py-xgboost-cpu": "xgboost",
    "matplotlib-base": "matplotlib",
    "pytables": "tables",
    "python-graphviz": "graphviz",
    "tensorflow-mkl": "tensorflow",
    "tensorflow-base": "tensorflow",
    "pyqt": "PyQt5",
    "opencv": "opencv-python",
    "py-opencv": "opencv-python",
    "libopencv": "opencv-python",
    "msgpack-python": "msgpack",
    "pillow-simd": "pillow",
    "ruamel_yaml": "ruamel.yaml",
    "typing_extensions": "typing-extensions",
}
# Conda packages that are not Python distributions (toolchains, native libraries, runtimes).
CONDA_ONLY = frozenset(
    {
        "blas", "ca-certificates", "cmake", "cudatoolkit", "cuda-toolkit", "cudnn", "cxx-compiler",
        "gcc", "gcc_linux-64", "git", "gxx", "gxx_linux-64", "intel-openmp", "libblas",
        "libcblas", "libgcc", "libgcc-ng", "libgfortran", "liblapack", "libstdcxx-ng", "make",
        "mkl", "mkl-include", "mkl-service", "mkl_fft", "mkl_random", "nccl", "nodejs",
        "openblas", "openjdk", "openmpi", "openssl", "pip", "r-base", "readline", "sqlite", "tk",
        "xz", "zlib", "_libgcc_mutex", "_openmp_mutex", "ld_impl_linux-64", "libffi", "ncurses",
        "tzdata", "cpuonly", "pytorch-cuda", "pytorch-mutex",
    }
)  # fmt: skip
_CONDA_SPEC = re.compile(r"^\s*([A-Za-z0-9_.\-]+)\s*(.*)$")
_OPERATORS = ("==", ">=", "<=", "!=", "~=", ">", "<")
_REGISTRY_ENV = re.compile(
    r"^azureml://registries/(?P<registry>[^/]+)/environments/(?P<name>[^/]+)"
    r"(?:/(?:versions/(?P<version>[^/]+)|labels/(?P<label>[^/]+)))?/?$"
)
_WORKSPACE_ENV = re.compile(
    r"^azureml:(?P<name>[A-Za-z0-9][A-Za-z0-9_.-]*)(?::(?P<version>[^:@]+)|@(?P<label>[^:@]+))?$"
)
_CURATED_IMAGE = re.compile(r"^mcr\.microsoft\.com/azureml/curated/(?P<name>[^:@]+)")


class StepEnvironmentError(BadInputError):
    """A step environment that cannot be resolved or built (bad input: never retried)."""

    def __init__(self, message: str) -> None:
        super().__init__(message, code="environment")


@dataclass(frozen=True)
class EnvironmentSpec:
    """What a step runs in: pip requirement lines and where they come from.

    ``name`` and ``source`` are for people (the conda file or the reference that asked);
    ``key`` identifies the built virtualenv and ignores both, so equal declarations share it.
    """

    name: str
    source: str
    requirements: tuple[str, ...] = ()
    index_url: str | None = None
    extra_index_urls: tuple[str, ...] = ()
    find_links: tuple[str, ...] = ()
    python: str | None = None
    notes: tuple[str, ...] = ()

    @property
    def key(self) -> str:
        identity = {
            "builder": BUILDER_VERSION,
            "python": sys.version.split()[0],
            "requirements": list(self.requirements),
            "index_url": self.index_url,
            "extra_index_urls": list(self.extra_index_urls),
            "find_links": list(self.find_links),
        }
        text = json.dumps(identity, sort_keys=True)
        return hashlib.sha256(text.encode("utf-8")).hexdigest()[:16]

    def python_warning(self) -> str | None:
        """A line to warn with when the declared Python is not the machine's, else None."""
        if not self.python or _python_matches(self.python, MACHINE_PYTHON):
            return None
        return (
            f"environment {self.name!r} asks for Python {self.python}; this machine runs its "
            f"steps with Python {sys.version.split()[0]}"
        )


def _python_matches(requested: str, machine: str) -> bool:
    requested = requested.strip().lstrip("=")
    if any(requested.startswith(op) for op in _OPERATORS):
        from packaging.specifiers import InvalidSpecifier, SpecifierSet

        try:
            return SpecifierSet(requested).contains(sys.version.split()[0])
        except InvalidSpecifier:
            return False
    parts = requested.split(".")
    return ".".join(parts[:2]) == machine


# -- resolving a declaration -------------------------------------------------------------------


def conda_requirements(name: str, source: str, conda: Mapping[str, Any]) -> EnvironmentSpec:
    """The environment a conda file describes (``source`` names the file in messages)."""
    if not isinstance(conda, Mapping):
        raise StepEnvironmentError(f"{source}: a conda file must be a mapping")
    if name in ("", "inline", ANONYMOUS) and isinstance(conda.get("name"), str):
        name = conda["name"]
    deps = conda.get("dependencies") or []
    if not isinstance(deps, list):
        raise StepEnvironmentError(f"{source}: 'dependencies' must be a list")
    requirements: list[str] = []
    notes: list[str] = []
    python: str | None = None
    pip_lines: list[str] = []
    for dep in deps:
        if isinstance(dep, Mapping):
            pip = dep.get("pip")
            if pip is None:
                notes.append(f"ignored dependency entry {dict(dep)!r}")
                continue
            if not isinstance(pip, list):
                raise StepEnvironmentError(f"{source}: the 'pip' entry must be a list")
            pip_lines.extend(str(line) for line in pip)
            continue
        package, version = _split_conda(str(dep))
        lowered = package.lower()
        if lowered == "python":
            python = version.lstrip("=") or None
            continue
        if lowered in CONDA_ONLY:
            if lowered != "pip":
                notes.append(f"conda package {package!r} has no PyPI equivalent; skipped")
            continue
        pypi = CONDA_TO_PYPI.get(lowered, package)
        if pypi != package:
            notes.append(f"conda package {package!r} installed as {pypi!r} from PyPI")
        requirements.append(pypi + _pip_version(version))
    index_url, extra, links, pip_reqs, pip_notes = _pip_section(pip_lines, source)
    channels = conda.get("channels") or []
    if channels:
        notes.append(
            "conda channels (" + ", ".join(map(str, channels)) + ") are not used: conda "
            "packages come from PyPI"
        )
    return EnvironmentSpec(
        name=name,
        source=source,
        requirements=tuple(requirements + pip_reqs),
        index_url=index_url,
        extra_index_urls=tuple(extra),
        find_links=tuple(links),
        python=python,
        notes=tuple(notes + pip_notes),
    )


def _split_conda(spec: str) -> tuple[str, str]:
    spec = spec.rsplit("::", maxsplit=1)[-1].strip()  # channel::package
    match = _CONDA_SPEC.match(spec)
    if not match:
        raise StepEnvironmentError(f"conda dependency {spec!r} is not a package specification")
    return match.group(1), match.group(2).strip()


def _pip_version(version: str) -> str:
    """A conda version constraint as a pip one (``=1.2`` is a prefix match in conda)."""
    version = version.replace(" ", "")
    if not version:
        return ""
    if version.startswith("=") and not version.startswith("=="):
        number = version[1:].split("=")[0]  # drop a build string: =1.2.3=py38h...
        if number.endswith("*"):
            return f"=={number}"
        return f"=={number}.*" if number.count(".") < 2 else f"=={number}"
    if any(version.startswith(op) for op in _OPERATORS):
        return version
    number = version.split("=")[0]
    return f"=={number}" if "*" in number or number.count(".") >= 2 else f"=={number}.*"


def _pip_section(
    lines: Iterable[str], source: str
) -> tuple[str | None, list[str], list[str], list[str], list[str]]:
    """Index options, requirement lines and notes from a conda file's ``pip:`` entries."""
    index_url: str | None = None
    extra: list[str] = []
    links: list[str] = []
    reqs: list[str] = []
    notes: list[str] = []
    for raw in lines:
        line = raw.split(" #")[0].strip()
        if not line or line.startswith("#"):
            continue
        if not line.startswith("-"):
            reqs.append(line)
            continue
        words = shlex.split(line)
        option, value = words[0], (words[1] if len(words) > 1 else "")
        if "=" in option:
            option, _, value = option.partition("=")
        if option in ("--index-url", "-i"):
            index_url = value
        elif option == "--extra-index-url":
            extra.append(value)
        elif option in ("--find-links", "-f"):
            links.append(value)
        elif option in ("--pre", "--no-cache-dir", "--upgrade", "-U", "--prefer-binary"):
            notes.append(f"pip option {option!r} in {source} does not change a fresh build")
        else:
            raise StepEnvironmentError(
                f"{source}: pip option {option!r} is not supported locally "
                "(requirements, --index-url, --extra-index-url and --find-links are)"
            )
    return index_url, extra, links, reqs, notes


def curated_requirements(env: CuratedEnvironment, reference: str) -> EnvironmentSpec:
    notes = [
        f"curated environment {env.name}: {pkg} {upstream} → {local} ({why})"
        for pkg, upstream, local, why in env.adjustments
    ]
    return EnvironmentSpec(
        name=env.name,
        source=reference,
        requirements=env.packages,
        python=env.python,
        notes=tuple(notes),
    )


EnvironmentLookup = Callable[[str, "str | None", "str | None"], Mapping[str, Any]]


def resolve_environment(
    declared: Any,
    *,
    base_dir: Path,
    source: str = "",
    lookup: EnvironmentLookup | None = None,
    where: str = "",
) -> EnvironmentSpec:
    """The ``EnvironmentSpec`` a step's ``environment`` declaration stands for.

    ``declared`` is what azure.ai.ml's loader gives: an ``Environment`` entity (inline
    ``image`` + ``conda_file``), a reference string, or None. ``base_dir`` resolves relative
    conda file paths; ``source`` names the file that declared it (for messages);
    ``lookup(name, version, label)`` finds registered environments.
    Raises ``StepEnvironmentError`` (one line, prefixed with ``where``) for what cannot run here.
    """
    prefix = f"{where}: " if where else ""
    if declared is None:
        return EnvironmentSpec(name="(none)", source=f"{where} declares no environment")
    if isinstance(declared, str):
        return _from_reference(declared.strip(), lookup, prefix)
    name = str(getattr(declared, "name", "") or "")
    if not name or name == ANONYMOUS:
        name = "inline"
    build = getattr(declared, "build", None)
    if build is not None and getattr(build, "path", None):
        raise StepEnvironmentError(
            f"{prefix}environment {name!r} is built from a Docker context "
            f"({build.path}); the local executor builds no images (no Docker engine)"
        )
    conda = getattr(declared, "conda_file", None)
    image = str(getattr(declared, "image", "") or "")
    if conda:
        if isinstance(conda, (str, Path)):
            path = (base_dir / str(conda)).resolve()
            conda = _read_conda(path, prefix)
            source = str(path)
        else:
            source = source or f"{where or name} (conda file)"
        return conda_requirements(name, source, conda)
    if image:
        return _from_image(image, name, prefix)
    raise StepEnvironmentError(
        f"{prefix}environment {name!r} has neither an image nor a conda file"
    )


def _read_conda(path: Path, prefix: str) -> Mapping[str, Any]:
    try:
        loaded = yaml.safe_load(path.read_text(encoding="utf-8"))
    except (OSError, yaml.YAMLError) as exc:
        raise StepEnvironmentError(f"{prefix}conda file {path} cannot be read: {exc}") from exc
    if not isinstance(loaded, Mapping):
        raise StepEnvironmentError(f"{prefix}conda file {path} is not a mapping")
    return loaded


def _from_image(image: str, name: str, prefix: str) -> EnvironmentSpec:
    curated = _CURATED_IMAGE.match(image)
    if curated:
        env = find_curated(curated.group("name"))
        if env is not None:
            return curated_requirements(env, image)
    if is_gpu_image(image):
        raise StepEnvironmentError(
            f"{prefix}environment {name!r} runs on GPU image {image!r}, which needs CUDA; "
            "the local executor runs CPU environments only"
        )
    return EnvironmentSpec(
        name=name if name != "inline" else image.rsplit("/", 1)[-1].split(":", maxsplit=1)[0],
        source=image,
        notes=(
            f"image {image} declares no conda file: the step gets a bare Python "
            "(the image's own packages are not reproduced)",
        ),
    )


def _from_reference(
    reference: str, lookup: EnvironmentLookup | None, prefix: str
) -> EnvironmentSpec:
    registry = _REGISTRY_ENV.match(reference)
    if registry:
        name = registry.group("name")
        env = find_curated(name) if registry.group("registry") == "azureml" else None
        if env is not None:
            return curated_requirements(env, reference)
        if is_gpu_image(name):
            raise StepEnvironmentError(
                f"{prefix}environment {reference!r} is a GPU environment (CUDA); the local "
                "executor runs CPU environments only"
            )
        raise StepEnvironmentError(
            f"{prefix}environment {reference!r} is not one the local executor knows "
            "(curated environments it builds: " + ", ".join(_curated_names()) + ")"
        )
    workspace = _WORKSPACE_ENV.match(reference)
    if workspace:
        name = workspace.group("name")
        curated = find_curated(name)
        if curated is not None:
            return curated_requirements(curated, reference)
        if lookup is None:
            raise StepEnvironmentError(
                f"{prefix}environment {reference!r} is not registered in the local workspace"
            )
        version, label = workspace.group("version"), workspace.group("label")
        try:
            definition = lookup(name, version, label)
        except NotFoundError as exc:
            raise StepEnvironmentError(
                f"{prefix}environment {reference!r} is not registered in the local workspace "
                "(python -m local.aml environment create --file ENV.yml)"
            ) from exc
        return _from_definition(definition, reference, prefix)
    raise StepEnvironmentError(f"{prefix}environment reference {reference!r} is not understood")


def _from_definition(definition: Mapping[str, Any], reference: str, prefix: str) -> EnvironmentSpec:
    name = str(definition.get("name") or reference)
    conda = definition.get("conda_file")
    if conda:
        if not isinstance(conda, Mapping):
            raise StepEnvironmentError(
                f"{prefix}registered environment {reference!r}: bad conda file"
            )
        return conda_requirements(name, f"{reference} (registered)", conda)
    image = str(definition.get("image") or "")
    if image:
        return _from_image(image, name, prefix)
    raise StepEnvironmentError(
        f"{prefix}registered environment {reference!r} has neither an image nor a conda file"
    )


def _curated_names() -> list[str]:
    from local.aml.curated import CURATED

    return sorted(CURATED)


# -- the machine's pip configuration -----------------------------------------------------------


@dataclass(frozen=True)
class IndexSettings:
    """Where packages come from on this machine, as pip is configured here."""

    index_url: str | None = None
    extra_index_urls: tuple[str, ...] = ()
    find_links: tuple[str, ...] = ()
    constraints: tuple[str, ...] = ()


def machine_index_settings(environ: Mapping[str, str] | None = None) -> IndexSettings:
    """pip's index settings: environment variables first, then pip's configuration files.

    Only what exists is kept: a ``file://`` index or find-links folder that is not on this
    disk is dropped (pip ignores those too, with a warning).
    """
    env = os.environ if environ is None else environ
    values: dict[str, str] = {}
    for key in ("index-url", "extra-index-url", "find-links", "constraint"):
        var = "PIP_" + key.upper().replace("-", "_")
        if env.get(var):
            values[key] = env[var]
    if len(values) < 4:
        for key, value in _pip_config().items():
            values.setdefault(key, value)

    def split(key: str) -> tuple[str, ...]:
        return tuple(v for v in values.get(key, "").split() if _exists(v))

    index = split("index-url")
    return IndexSettings(
        index_url=index[0] if index else None,
        extra_index_urls=split("extra-index-url"),
        find_links=split("find-links"),
        constraints=split("constraint"),
    )


def _exists(location: str) -> bool:
    parsed = urlparse(location)
    if parsed.scheme in ("http", "https"):
        return True
    path = parsed.path if parsed.scheme == "file" else location
    return Path(path).exists()


def _pip_config() -> dict[str, str]:
    try:
        out = subprocess.run(
            [sys.executable, "-m", "pip", "config", "list"],
            capture_output=True,
            text=True,
            timeout=30,
            check=False,
        ).stdout
    except (OSError, subprocess.TimeoutExpired):
        return {}
    found: dict[str, str] = {}
    for line in out.splitlines():
        key, sep, value = line.partition("=")
        if not sep:
            continue
        section, _, option = key.strip().rpartition(".")
        if section.endswith(("global", "install")) and option:
            found.setdefault(option, value.strip().strip("'\""))
    return found


@functools.lru_cache(maxsize=64)
def reachable(url: str, timeout: float = 3.0) -> bool:
    """True when ``url``'s host resolves and accepts a TCP connection (indexes in conda files
    may name hosts this machine cannot reach; pip skips those with a warning, uv fails)."""
    parsed = urlparse(url)
    if parsed.scheme not in ("http", "https"):
        return _exists(url)
    port = parsed.port or (443 if parsed.scheme == "https" else 80)
    try:
        with socket.create_connection((parsed.hostname or "", port), timeout=timeout):
            return True
    except OSError:
        return False


# -- building ----------------------------------------------------------------------------------


@dataclass
class BuiltEnvironment:
    """A virtualenv ready to run steps; ``python`` is its interpreter."""

    name: str
    key: str
    folder: Path
    python: Path
    installer: str
    seconds: float
    packages: int
    cached: bool
    notes: list[str] = field(default_factory=list)

    @property
    def bin_dir(self) -> Path:
        return self.python.parent


_MARKER = "environment.json"


class EnvironmentCache:
    """Virtualenvs under ``root``, one per ``EnvironmentSpec.key``, built once.

    ``ensure`` is safe across processes (a file lock per key) and never leaves a half-built
    environment for the next caller: an environment counts as built only once its marker
    file is written, and a folder without one is removed and built again.
    """

    def __init__(
        self,
        root: str | Path = DEFAULT_CACHE,
        *,
        index: IndexSettings | None = None,
        build_timeout: float = BUILD_TIMEOUT_SECONDS,
        installer: str | None = None,
    ) -> None:
        self.root = Path(root).resolve()
        self._index = index
        self.build_timeout = build_timeout
        self.installer = installer or ("uv" if _uv() else "pip")

    @property
    def index(self) -> IndexSettings:
        if self._index is None:
            self._index = machine_index_settings()
        return self._index

    def folder(self, spec: EnvironmentSpec) -> Path:
        # Keyed by content only: components declaring the same packages share one build.
        return self.root / spec.key

    def lookup(self, spec: EnvironmentSpec) -> BuiltEnvironment | None:
        """The built environment for ``spec``, or None when it is not built yet."""
        folder = self.folder(spec)
        try:
            info = json.loads((folder / _MARKER).read_text(encoding="utf-8"))
        except (OSError, ValueError):
            return None
        python = folder / "bin" / "python"
        if not python.exists():
            return None
        return BuiltEnvironment(
            name=spec.name,
            key=spec.key,
            folder=folder,
            python=python,
            installer=str(info.get("installer", "")),
            seconds=float(info.get("seconds", 0.0)),
            packages=int(info.get("packages", 0)),
            cached=True,
            notes=list(info.get("notes", [])),
        )

    def ensure(self, spec: EnvironmentSpec, progress: Progress | None = None) -> BuiltEnvironment:
        """The built environment for ``spec``, building it first when needed."""
        say = progress or (lambda _line: None)
        found = self.lookup(spec)
        if found is not None:
            return found
        self.root.mkdir(parents=True, exist_ok=True)
        with (self.root / f".{spec.key}.lock").open("w") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            try:
                found = self.lookup(spec)  # built by another process while we waited
                if found is not None:
                    return found
                return self._build(spec, say)
            finally:
                fcntl.flock(lock, fcntl.LOCK_UN)

    def _build(self, spec: EnvironmentSpec, say: Progress) -> BuiltEnvironment:
        folder = self.folder(spec)
        if folder.exists():
            shutil.rmtree(folder)
        started = time.monotonic()
        notes = list(spec.notes)
        count = len(spec.requirements)
        say(f"building environment {spec.name} ({count} requirement(s), {self.installer})")
        try:
            self._create(folder)
            indexes, skipped = self._indexes(spec)
            notes.extend(skipped)
            for line in skipped:
                say(line)
            if spec.requirements:
                self._install(spec, folder, indexes, say)
            packages = self._count(folder)
        except BaseException:
            shutil.rmtree(folder, ignore_errors=True)
            raise
        seconds = time.monotonic() - started
        info = {
            "name": spec.name,
            "source": spec.source,
            "key": spec.key,
            "installer": self.installer,
            "seconds": round(seconds, 2),
            "packages": packages,
            "spec": asdict(spec),
            "notes": notes,
        }
        (folder / _MARKER).write_text(json.dumps(info, indent=2), encoding="utf-8")
        say(f"built environment {spec.name}: {packages} packages in {seconds:.1f}s")
        return BuiltEnvironment(
            name=spec.name,
            key=spec.key,
            folder=folder,
            python=folder / "bin" / "python",
            installer=self.installer,
            seconds=seconds,
            packages=packages,
            cached=False,
            notes=notes,
        )

    def _create(self, folder: Path) -> None:
        base = _base_python()
        if self.installer == "uv":
            argv = [_uv() or "uv", "venv", "--quiet", "--relocatable", "--python", base]
            argv.append(str(folder))
        else:
            argv = [base, "-m", "venv", str(folder)]
        done = subprocess.run(argv, capture_output=True, text=True, timeout=120, check=False)
        if done.returncode != 0:
            raise StepEnvironmentError(f"could not create a virtualenv: {done.stderr.strip()}")

    def _indexes(self, spec: EnvironmentSpec) -> tuple[list[str], list[str]]:
        """Installer index arguments, and a note for every index dropped as unreachable."""
        machine = self.index
        args: list[str] = []
        notes: list[str] = []
        index_url = spec.index_url or machine.index_url
        if index_url:
            args += ["--index-url", index_url]
        for url in (*spec.extra_index_urls, *machine.extra_index_urls):
            if url in spec.extra_index_urls and not reachable(url):
                notes.append(
                    f"extra index {url} (from {spec.source}) is not reachable from this "
                    "machine; resolving from the other indexes"
                )
                continue
            args += ["--extra-index-url", url]
        for link in (*spec.find_links, *machine.find_links):
            args += ["--find-links", link]
        for constraint in machine.constraints:
            args += ["--constraint", constraint]
        return args, notes

    def _install(
        self, spec: EnvironmentSpec, folder: Path, indexes: list[str], say: Progress
    ) -> None:
        with tempfile.NamedTemporaryFile("w", suffix=".txt", delete=False) as handle:
            handle.write("\n".join(spec.requirements) + "\n")
            reqs = handle.name
        python = str(folder / "bin" / "python")
        if self.installer == "uv":
            # pip weighs every index alike; uv's default trusts only the first that has a
            # package, which differs whenever a mirror holds some versions and not others.
            argv = [_uv() or "uv", "pip", "install", "--python", python, "-r", reqs, *indexes]
            argv += ["--index-strategy", "unsafe-best-match"]
            # pip compiles what it installs, so Azure ML's images hold every module's
            # bytecode; uv does not unless asked. Without it each step process compiled
            # its imports from source (mlflow, scikit-learn, pandas: ~2,600 modules, half
            # a model step's time) wherever bytecode is not written back, as in read-only
            # or PYTHONDONTWRITEBYTECODE environments.
            argv += ["--compile-bytecode"]
        else:
            argv = [python, "-m", "pip", "install", "--disable-pip-version-check", "-r", reqs]
            argv += indexes
        env = {k: v for k, v in os.environ.items() if not k.startswith(("PIP_", "VIRTUAL_ENV"))}
        env.pop("PYTHONPATH", None)
        lines: list[str] = []
        try:
            proc = subprocess.Popen(
                argv,
                stdout=subprocess.PIPE,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                text=True,
                env=env,
                start_new_session=True,
            )
            deadline = time.monotonic() + self.build_timeout
            assert proc.stdout is not None
            for raw in proc.stdout:
                line = raw.rstrip()
                lines.append(line)
                if _worth_showing(line):
                    say(f"  {spec.name}: {line.strip()}")
                if time.monotonic() > deadline:
                    _kill(proc)
                    break
            try:
                code = proc.wait(timeout=max(1.0, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                _kill(proc)
                code = None
        finally:
            with contextlib.suppress(OSError):
                Path(reqs).unlink()
        if code is None or time.monotonic() > deadline:
            building = next((ln for ln in reversed(lines) if "uild" in ln), "")
            raise StepEnvironmentError(
                f"environment {spec.name} ({spec.source}): installing took longer than "
                f"{self.build_timeout:g}s and was stopped" + (f" ({building})" if building else "")
            )
        if code != 0:
            raise StepEnvironmentError(_failure(spec, lines))

    @staticmethod
    def _count(folder: Path) -> int:
        site = list(folder.glob("lib/python*/site-packages"))
        if not site:
            return 0
        return sum(1 for _ in site[0].glob("*.dist-info"))


def _worth_showing(line: str) -> bool:
    text = line.strip()
    return text.startswith(
        ("Resolved", "Prepared", "Installed", "Building", "Built", "Downloading")
    )


def _kill(proc: subprocess.Popen[str]) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.killpg(proc.pid, 9)
    with contextlib.suppress(subprocess.TimeoutExpired):
        proc.wait(timeout=10)


_PACKAGE_PATTERNS = (
    re.compile(r"Because ([A-Za-z0-9_.\-]+)(?:[<>=!~][^ ]*)? was not found"),
    re.compile(r"No matching distribution found for ([^\s]+)"),
    # uv: "Failed to download and build `scikit-learn==0.23.2`", "Failed to build `numpy`"
    re.compile(
        r"Failed to (?:download and build|build|download|prepare) `?([A-Za-z0-9_.\-]+[^`\s]*)"
    ),
    re.compile(r"you require ([A-Za-z0-9_.\-]+[^ ,]*)"),
    re.compile(r"Could not find a version that satisfies the requirement ([^\s]+)"),
)


# uv: "Failed to build `numpy`", "Failed to download and build `x`"; pip: "Failed to build x",
# "Failed building wheel for x".
_SOURCE_BUILD = re.compile(r"Failed to (?:download and )?build\b|Failed building wheel for")


def _failure(spec: EnvironmentSpec, lines: list[str]) -> str:
    """One message: the package, the installer's own words, the file that asked for it."""
    text = "\n".join(lines)
    package = next((m.group(1) for p in _PACKAGE_PATTERNS if (m := p.search(text))), None)
    detail = [ln.strip() for ln in lines if ln.strip() and not _worth_showing(ln)]
    said = " | ".join(detail[-6:])[:1500] or "no output"
    what = f"cannot install {package!r}" if package else "cannot be installed"
    if _SOURCE_BUILD.search(text):
        # An installer builds from source only when no wheel fits this Python.
        machine = f"{sys.version_info.major}.{sys.version_info.minor}"
        what += f" (no wheel for Python {machine}; building it from source failed)"
    return f"environment {spec.name} ({spec.source}): {what}: {said}"


def _uv() -> str | None:
    beside = Path(sys.executable).parent / "uv"
    return str(beside) if beside.exists() else shutil.which("uv")


def _base_python() -> str:
    """The machine's Python behind this virtualenv (never the project venv itself)."""
    base = getattr(sys, "_base_executable", None) or sys.executable
    return str(Path(base).resolve())


def project_environment() -> BuiltEnvironment:
    """The project's own virtualenv, for ``--env project`` (steps as the executor runs)."""
    python = Path(sys.executable)
    return BuiltEnvironment(
        name="project",
        key="project",
        folder=Path(sys.prefix),
        python=python,
        installer="",
        seconds=0.0,
        packages=0,
        cached=True,
    )


__all__ = [
    "CONDA_TO_PYPI",
    "DEFAULT_CACHE",
    "BuiltEnvironment",
    "EnvironmentCache",
    "EnvironmentSpec",
    "IndexSettings",
    "StepEnvironmentError",
    "conda_requirements",
    "machine_index_settings",
    "project_environment",
    "resolve_environment",
]
