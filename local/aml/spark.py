"""Spark nodes: what a ``type: spark`` node asks for, and the ``spark-submit`` that runs it here.

Azure ML runs a spark node (inline in a pipeline, or a spark component) on serverless Spark:
a pool of the node's ``resources.runtime_version`` starts, the code folder is uploaded, and
``spark-submit`` runs the entry file with ``py_files``, ``files``, ``archives``, ``jars`` and
``conf``, then ``args`` with inputs and outputs filled in (``mode: direct`` only: the job is
handed their locations and reads and writes them itself). Locally the same submission runs
Spark in local mode, from a virtualenv holding the runtime's ``pyspark``:

- ``parse_spark`` turns the SDK's node into a ``SparkSpec`` (pure data), refusing in one line
  what cannot run here: a JVM entry class, a runtime the table below does not know, a file
  the code folder lacks, remote files, Maven packages;
- ``spark_environment`` adds the runtime's ``pyspark`` to the node's declared packages;
- ``submit_argv`` builds the ``spark-submit`` command line; ``local_master`` sizes
  ``local[N]`` from the cores the conf asks for; ``dropped_conf`` lists the settings that
  only size a cluster (they are left out, and the job log says so once).
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from adapters.errors import BadInputError
from local.aml.environments import EnvironmentSpec

# The SDK's entry types (azure.ai.ml.entities SparkJobEntryType).
PYTHON_ENTRY = "SparkJobPythonEntry"
CLASS_ENTRY = "SparkJobScalaEntry"
# The SDK lifts these conf keys into node attributes; they are put back under their conf names.
SDK_CONF_ATTRIBUTES = {
    "driver_cores": "spark.driver.cores",
    "driver_memory": "spark.driver.memory",
    "executor_cores": "spark.executor.cores",
    "executor_memory": "spark.executor.memory",
    "executor_instances": "spark.executor.instances",
    "dynamic_allocation_enabled": "spark.dynamicAllocation.enabled",
    "dynamic_allocation_min_executors": "spark.dynamicAllocation.minExecutors",
    "dynamic_allocation_max_executors": "spark.dynamicAllocation.maxExecutors",
}
# Settings that only size or place a cluster's driver and executors. In local mode the
# executors are threads of the driver's JVM: these are left out (``dropped_conf``).
CLUSTER_ONLY_PREFIXES = ("spark.dynamicAllocation.", "spark.yarn.", "spark.kubernetes.")
CLUSTER_ONLY_KEYS = frozenset(
    {
        "spark.driver.cores",
        "spark.executor.cores",
        "spark.executor.instances",
        "spark.executor.memory",
        "spark.executor.memoryOverhead",
        "spark.executor.memoryOverheadFactor",
        "spark.driver.memoryOverhead",
        "spark.driver.memoryOverheadFactor",
        "spark.submit.deployMode",
        "spark.master",
    }
)
# Settings that fetch from package repositories (Maven); this machine reaches none.
DOWNLOAD_KEYS = ("spark.jars.packages", "spark.jars.repositories", "spark.jars.ivySettings")
DEFAULT_DRIVER_MEMORY = "1g"
_REMOTE_PREFIXES = ("abfss://", "abfs://", "wasbs://", "wasb://", "https://", "http://",
                    "azureml://", "hdfs://", "s3a://", "gs://")  # fmt: skip


@dataclass(frozen=True)
class SparkRuntime:
    """An Azure ML serverless Spark runtime and the ``pyspark`` that stands for it here.

    ``adjustments`` lists, as ``local.aml.curated`` does, every pin moved from what the
    runtime ships, with the reason; empty when the runtime's own Spark runs here as it is.
    """

    version: str
    spark: str
    python: str
    java: str
    source: str
    adjustments: tuple[tuple[str, str, str, str], ...] = ()

    @property
    def requirement(self) -> str:
        return f"pyspark=={self.spark}"


# Azure ML serverless Spark compute runs on the Azure Synapse runtimes. Runtime 3.4 ships
# Apache Spark 3.4.1 with Python 3.10, Java 11 and Scala 2.12.17 (the Synapse runtime 3.4
# component table). pyspark 3.4.1 supports Python 3.11 (added in 3.4.0, SPARK-41454), so the
# runtime's own Spark is pinned unchanged; Spark 3.4 runs on Java 8, 11 and 17.
RUNTIMES: dict[str, SparkRuntime] = {
    "3.4": SparkRuntime(
        version="3.4",
        spark="3.4.1",
        python="3.10",
        java="11",
        source="Azure Synapse Runtime for Apache Spark 3.4: component versions",
    ),
}


@dataclass(frozen=True)
class SparkSpec:
    """A spark node as submitted: its entry file, the files it ships, conf and args."""

    entry: str
    runtime: str
    py_files: tuple[str, ...] = ()
    files: tuple[str, ...] = ()
    archives: tuple[str, ...] = ()
    jars: tuple[str, ...] = ()
    conf: dict[str, str] = field(default_factory=dict)
    args: str = ""
    instance_type: str = ""


def find_runtime(version: str) -> SparkRuntime | None:
    """The runtime ``version`` names: ``3.4``, ``3.4.0`` … (major.minor decides)."""
    parts = str(version).strip().split(".")
    return RUNTIMES.get(".".join(parts[:2])) if len(parts) >= 2 else None


def _conf_text(value: Any) -> str:
    """A conf value as spark-submit reads it (YAML booleans are ``true``/``false``)."""
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


def _names(value: Any) -> tuple[str, ...]:
    if value in (None, "", []):
        return ()
    if isinstance(value, str):
        return (value,)
    return tuple(str(v) for v in value)


def parse_spark(full: str, node: Any, component: Any, code_dir: Path | None) -> SparkSpec:
    """The ``SparkSpec`` of SDK node ``node`` (its ``component`` holds what the node does not
    set); ``BadInputError`` in one line, naming the node, for what cannot run here."""
    what = f"node {full!r}"

    def pick(attr: str) -> Any:
        value = getattr(node, attr, None)
        return value if value not in (None, {}, []) else getattr(component, attr, None)

    entry = pick("entry")
    kind = str(getattr(entry, "entry_type", "") or "")
    target = str(getattr(entry, "entry", "") or "")
    if kind == CLASS_ENTRY:
        raise BadInputError(
            f"{what}: spark entry class_name {target!r} is a JVM entry class, which the local "
            "executor does not run (it runs entry: file)",
            code="unsupported_node",
        )
    if not target:
        raise BadInputError(f"{what}: a spark node needs entry.file", code="invalid_pipeline")
    if code_dir is None:
        raise BadInputError(f"{what}: a spark node needs a code folder", code="invalid_pipeline")
    resources = getattr(node, "resources", None)
    version = _resource(resources, "runtime_version")
    if not version:
        raise BadInputError(
            f"{what}: no resources.runtime_version; the local executor runs serverless Spark "
            "nodes (an attached Synapse pool's runtime is not known here)",
            code="unsupported_node",
        )
    if find_runtime(version) is None:
        raise BadInputError(
            f"{what}: Spark runtime_version {version!r} is not one the local executor runs "
            f"(runtimes: {', '.join(sorted(RUNTIMES))})",
            code="unsupported_node",
        )
    conf: dict[str, str] = {}
    for attr, key in SDK_CONF_ATTRIBUTES.items():
        value = pick(attr)
        if value is not None and value != "":
            conf[key] = _conf_text(value)
    for key, value in (pick("conf") or {}).items():
        conf[str(key)] = _conf_text(value)
    for key in DOWNLOAD_KEYS:
        if key in conf:
            raise BadInputError(
                f"{what}: conf {key} fetches from a package repository, which this machine "
                "cannot reach; ship the jars with jars: instead",
                code="unsupported_node",
            )
    spec = SparkSpec(
        entry=target,
        runtime=version,
        py_files=_names(pick("py_files")),
        files=_names(pick("files")),
        archives=_names(pick("archives")),
        jars=_names(pick("jars")),
        conf=conf,
        args=" ".join(str(pick("args") or "").split()),
        instance_type=_resource(resources, "instance_type"),
    )
    _check_shipped(what, spec, code_dir)
    return spec


def _resource(resources: Any, key: str) -> str:
    if isinstance(resources, Mapping):
        return str(resources.get(key) or "")
    return str(getattr(resources, key, None) or "")


def _check_shipped(what: str, spec: SparkSpec, code_dir: Path) -> None:
    """Every file the node ships lies in its code folder (Azure ML uploads it from there)."""
    listed = [("entry.file", spec.entry)]
    for key in ("py_files", "files", "archives", "jars"):
        listed += [(key, name) for name in getattr(spec, key)]
    for key, name in listed:
        local = name.split("#", 1)[0] if key == "archives" else name
        if local.lower().startswith(_REMOTE_PREFIXES):
            raise BadInputError(
                f"{what}: {key} {name!r} is a remote location the local executor does not "
                "download; put it in the code folder",
                code="unsupported_node",
            )
        if not (code_dir / local).is_file():
            raise BadInputError(
                f"{what}: {key} {name!r} is not in the code folder {code_dir}",
                code="invalid_pipeline",
            )


def input_modes_direct(what: str, modes: Mapping[str, str | None]) -> None:
    """Refuse an input or output whose mode is not ``direct`` (``modes``: ``inputs.X`` or
    ``outputs.O`` → the mode in force, None when none is set anywhere)."""
    for name, mode in modes.items():
        if mode != "direct":
            shown = f"mode {mode!r}" if mode else "no mode (Azure ML's default is a mount)"
            raise BadInputError(
                f"{what}: {name} has {shown}; a spark node reads its inputs and writes its "
                "outputs only in mode direct, as Azure ML requires",
                code="invalid_pipeline",
            )


def spark_environment(base: EnvironmentSpec | None, spark: SparkSpec) -> EnvironmentSpec:
    """The node's environment (its declared packages, if any) with the runtime's pyspark."""
    runtime = find_runtime(spark.runtime)
    if runtime is None:  # parse_spark refused it already
        raise BadInputError(f"Spark runtime_version {spark.runtime!r} is not known")
    notes = [
        f"Spark runtime {runtime.version}: {pkg} {upstream} → {local} ({why})"
        for pkg, upstream, local, why in runtime.adjustments
    ]
    name = f"spark-{runtime.version}"
    requirements: tuple[str, ...] = ()
    source = f"Azure ML Spark runtime {runtime.version} ({runtime.source})"
    if base is not None and base.requirements:
        name = f"{base.name}+{name}"
        requirements = base.requirements
        source = f"{base.source} + {source}"
        notes = [*base.notes, *notes]
    return EnvironmentSpec(
        name=name,
        source=source,
        requirements=(*requirements, runtime.requirement),
        index_url=base.index_url if base else None,
        extra_index_urls=base.extra_index_urls if base else (),
        find_links=base.find_links if base else (),
        python=runtime.python,
        notes=tuple(notes),
    )


def java_missing_reason() -> str | None:
    """Why Spark cannot start on this machine (no ``java`` on PATH), else None."""
    if shutil.which("java"):
        return None
    return (
        "Spark needs Java and no java is on PATH (Debian: apt-get install openjdk-17-jre-headless)"
    )


def _number(value: str | None) -> int:
    try:
        return max(0, int(float(str(value))))
    except (TypeError, ValueError):
        return 0


def _enabled(value: str | None) -> bool:
    return str(value).strip().lower() == "true"


def local_master(conf: Mapping[str, str], machine_cores: int) -> str:
    """``local[N]``: the cores the conf asks for — executor cores × executors (the maximum
    under dynamic allocation), at least the driver's — capped at this machine's cores."""
    executors = _number(conf.get("spark.executor.instances")) or 1
    if _enabled(conf.get("spark.dynamicAllocation.enabled")):
        executors = max(executors, _number(conf.get("spark.dynamicAllocation.maxExecutors")))
    wanted = max(
        _number(conf.get("spark.executor.cores")) * executors,
        _number(conf.get("spark.driver.cores")),
        1,
    )
    return f"local[{max(1, min(wanted, machine_cores))}]"


def dropped_conf(conf: Mapping[str, str]) -> list[str]:
    """The conf keys that only size or place a cluster (left out in local mode)."""
    return [
        key for key in conf if key in CLUSTER_ONLY_KEYS or key.startswith(CLUSTER_ONLY_PREFIXES)
    ]


def submit_argv(
    spark: SparkSpec,
    *,
    spark_submit: Path,
    snapshot: Path,
    args: Sequence[str],
    machine_cores: int | None = None,
    name: str = "",
) -> list[str]:
    """The ``spark-submit`` command line that runs ``spark`` from ``snapshot`` in local mode.

    Shipped files are named by their path in the snapshot; every conf entry is passed as
    ``--conf k=v`` except the cluster-only ones; the JVM gets ``spark.driver.memory`` (default
    1g). Local-only settings keep the driver on loopback with no web UI; the conf cannot
    override those.
    """
    cores = machine_cores or os.cpu_count() or 1
    argv = [str(spark_submit), "--master", local_master(spark.conf, cores)]
    if name:
        argv += ["--name", name]
    for option, names in (
        ("--py-files", spark.py_files),
        ("--files", spark.files),
        ("--archives", spark.archives),
        ("--jars", spark.jars),
    ):
        if names:
            argv += [option, ",".join(_in_snapshot(snapshot, n) for n in names)]
    dropped = set(dropped_conf(spark.conf))
    conf = {k: v for k, v in spark.conf.items() if k not in dropped}
    conf.setdefault("spark.driver.memory", DEFAULT_DRIVER_MEMORY)
    conf.update(
        {
            "spark.ui.enabled": "false",
            "spark.driver.host": "127.0.0.1",
            "spark.driver.bindAddress": "127.0.0.1",
        }
    )
    for key, value in conf.items():
        argv += ["--conf", f"{key}={value}"]
    argv.append(str(snapshot / spark.entry))
    argv += list(args)
    return argv


def _in_snapshot(snapshot: Path, name: str) -> str:
    """A shipped file's path in the snapshot (an archive keeps its ``#alias``)."""
    local, sep, alias = name.partition("#")
    return str(snapshot / local) + (sep + alias if sep else "")


def spark_process_env(python: Path, scratch: Path) -> dict[str, str]:
    """What Spark's launcher and its Python workers need: the environment's interpreter for
    driver and workers, its Spark installation, loopback for the driver, and ``scratch``
    for Spark's temporary files (shuffle, shipped files) instead of /tmp."""
    site = sorted(python.parent.parent.glob("lib/python*/site-packages/pyspark"))
    env = {
        "PYSPARK_PYTHON": str(python),
        "PYSPARK_DRIVER_PYTHON": str(python),
        "SPARK_LOCAL_IP": "127.0.0.1",
        "SPARK_LOCAL_DIRS": str(scratch),
    }
    if site:
        env["SPARK_HOME"] = str(site[0])
    return env


__all__ = [
    "RUNTIMES",
    "SparkRuntime",
    "SparkSpec",
    "dropped_conf",
    "find_runtime",
    "input_modes_direct",
    "java_missing_reason",
    "local_master",
    "parse_spark",
    "spark_environment",
    "spark_process_env",
    "submit_argv",
]
