"""Spark nodes: what the spec loader records, what is refused at submit, the spark-submit argv.

Pipelines are small ones written for the test and parsed by azure.ai.ml's own loader (the
same parse Azure ML's CLI does); nothing here starts a JVM (tests/integration/test_spark_steps.py
runs one).
"""

from __future__ import annotations

import json
import shutil
import textwrap
from pathlib import Path

import pytest

from adapters.errors import BadInputError
from local.aml import LocalExecutor
from local.aml.spark import (
    RUNTIMES,
    SparkSpec,
    dropped_conf,
    find_runtime,
    local_master,
    spark_environment,
    submit_argv,
)
from local.aml.spec import load_pipeline

FIXTURE = Path(__file__).resolve().parents[3] / "fixtures" / "aml" / "spark"
# The fixture's node (tests/integration/test_spark_steps.py runs it) with every kind of shipped
# file and a setting the executor ignores.
INLINE = (
    (FIXTURE / "pipeline.yml")
    .read_text()
    .replace(
        "    files: [greeting.txt]\n",
        "    files: [greeting.txt]\n"
        '    archives: ["bundle.tar#bundle"]\n'
        "    jars: [extra.jar]\n"
        "    identity:\n"
        "      type: user_identity\n",
    )
)

COMPONENT = """\
type: spark
name: sample
version: 1
code: .
entry:
  file: sample.py
inputs:
  text:
    type: uri_file
    mode: direct
  rate:
    type: number
    default: 0.5
outputs:
  sampled:
    type: uri_folder
    mode: direct
args: --text ${{inputs.text}} --rate ${{inputs.rate}} --out ${{outputs.sampled}}
conf:
  spark.driver.cores: 1
  spark.driver.memory: 1g
  spark.executor.cores: 1
  spark.executor.memory: 1g
  spark.dynamicAllocation.enabled: True
  spark.dynamicAllocation.minExecutors: 1
  spark.dynamicAllocation.maxExecutors: 3
"""

WITH_COMPONENT = """\
type: pipeline
inputs:
  text:
    type: uri_file
    path: ./rows.csv
jobs:
  sample:
    type: spark
    component: ./sample/component.yml
    inputs:
      text:
        path: ${{parent.inputs.text}}
        mode: direct
      rate: 0.25
    resources:
      instance_type: standard_e4s_v3
      runtime_version: 3.4.0
"""


def write(folder: Path, body: str) -> Path:
    """The fixture, a spark component and ``pipeline.yml`` (``body``) in ``folder``."""
    shutil.copytree(FIXTURE, folder, dirs_exist_ok=True)
    extra = {
        "src/bundle.tar": "",
        "src/extra.jar": "",
        "sample/sample.py": "print('sample')\n",
        "sample/component.yml": COMPONENT,
    }
    for name, text in extra.items():
        (folder / name).parent.mkdir(parents=True, exist_ok=True)
        (folder / name).write_text(text)
    path = folder / "pipeline.yml"
    path.write_text(textwrap.dedent(body))
    return path


def test_an_inline_spark_node_is_recorded_as_submitted(tmp_path: Path) -> None:
    spec = load_pipeline(write(tmp_path, INLINE))
    step = spec.steps["count"]
    assert step.kind == "spark"
    assert step.code_dir == (tmp_path / "src").resolve()
    assert step.spark == SparkSpec(
        entry="main.py",
        runtime="3.4",
        py_files=("shout.py",),
        files=("greeting.txt",),
        archives=("bundle.tar#bundle",),
        jars=("extra.jar",),
        conf={
            "spark.driver.cores": "1",
            "spark.driver.memory": "1g",
            "spark.executor.cores": "1",
            "spark.executor.memory": "1g",
            "spark.executor.instances": "2",
            "spark.sql.shuffle.partitions": "2",
        },
        args="--rows ${{inputs.rows}} --out ${{outputs.counted}} --label ${{inputs.label}}",
        instance_type="standard_e4s_v3",
    )
    # resources are used (the runtime) and so not listed as ignored; identity still is.
    assert [w.split(":")[1].split()[0] for w in spec.warnings] == ["identity"]


def test_a_spark_component_node_takes_the_component_conf_and_the_node_resources(
    tmp_path: Path,
) -> None:
    step = load_pipeline(write(tmp_path, WITH_COMPONENT)).steps["sample"]
    assert step.spark is not None
    assert step.code_dir == (tmp_path / "sample").resolve()
    assert step.spark.entry == "sample.py"
    assert step.spark.runtime == "3.4.0"
    assert step.spark.conf["spark.dynamicAllocation.enabled"] == "true"
    assert step.spark.conf["spark.dynamicAllocation.maxExecutors"] == "3"
    assert step.spark.args == (
        "--text ${{inputs.text}} --rate ${{inputs.rate}} --out ${{outputs.sampled}}"
    )
    assert step.inputs["rate"] == 0.25


def test_the_step_environment_is_the_runtime_pyspark_with_the_declared_packages(
    tmp_path: Path,
) -> None:
    conda = {"dependencies": ["python=3.10", {"pip": ["pyjokes==0.6.0"]}]}
    (tmp_path / "conda.json").write_text(json.dumps(conda))
    body = INLINE.replace(
        "    code: ./src\n",
        "    code: ./src\n    environment:\n      conda_file: ./conda.json\n"
        "      image: mcr.microsoft.com/azureml/openmpi4.1.0-ubuntu22.04\n",
    )
    executor = LocalExecutor(tmp_path / "aml")
    bare = executor.step_environment(load_pipeline(write(tmp_path, INLINE)).steps["count"])
    assert bare.name == "spark-3.4"
    assert bare.requirements == ("pyspark==3.4.1",)
    assert bare.python == "3.10"  # the runtime's Python: a warning here, never a refusal
    declared = executor.step_environment(load_pipeline(write(tmp_path, body)).steps["count"])
    assert declared.requirements == ("pyjokes==0.6.0", "pyspark==3.4.1")
    assert declared.name.endswith("+spark-3.4")
    assert declared.key != bare.key


@pytest.mark.parametrize(
    ("change", "expected"),
    [
        (("entry:\n      file: main.py", "entry:\n      class_name: org.example.Main"),
         r"node 'count': spark entry class_name 'org.example.Main' is a JVM entry class"),
        (('runtime_version: "3.4"', 'runtime_version: "3.3"'),
         r"node 'count': Spark runtime_version '3.3' is not one the local executor runs "
         r"\(runtimes: 3.4\)"),
        (('      runtime_version: "3.4"\n', ""), r"node 'count': no resources.runtime_version"),
        (("    mode: direct\noutputs:", "    mode: ro_mount\noutputs:"),
         r"node 'count': input 'rows' has mode 'ro_mount'; a spark node reads its inputs and "
         r"writes its outputs only in mode direct"),
        (("    type: uri_folder\n    mode: direct\n", "    type: uri_folder\n"),
         r"node 'count': output 'counted' has no mode"),
        (("py_files: [shout.py]", "py_files: [missing.zip]"),
         r"node 'count': py_files 'missing.zip' is not in the code folder"),
        (("jars: [extra.jar]", "jars: [abfss://c@a.dfs.core.windows.net/x.jar]"),
         r"node 'count': jars 'abfss://.*' is a remote location"),
        (("spark.sql.shuffle.partitions: 2", "spark.jars.packages: org.example:x:1.0"),
         r"node 'count': conf spark.jars.packages fetches from a package repository"),
    ],
)  # fmt: skip
def test_what_cannot_run_is_refused_in_one_line_naming_the_node(
    tmp_path: Path, change: tuple[str, str], expected: str
) -> None:
    assert change[0] in INLINE
    with pytest.raises(BadInputError, match=expected) as caught:
        load_pipeline(write(tmp_path, INLINE.replace(*change)))
    assert "\n" not in str(caught.value)


def test_a_spark_node_is_refused_at_submit_when_java_is_missing(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    empty = tmp_path / "bin"
    empty.mkdir()
    monkeypatch.setenv("PATH", str(empty))  # nothing on PATH: no java
    executor = LocalExecutor(tmp_path / "aml")
    with pytest.raises(BadInputError, match=r"^node 'count': Spark needs Java and no java is on"):
        executor.submit(write(tmp_path, INLINE))
    assert not list((tmp_path / "aml").glob("jobs/*"))  # nothing recorded, nothing built


def test_runtime_versions_map_by_major_and_minor() -> None:
    assert find_runtime("3.4") is RUNTIMES["3.4"]
    assert find_runtime("3.4.0") is RUNTIMES["3.4"]
    assert find_runtime("3.3") is None
    assert find_runtime("3") is None
    assert RUNTIMES["3.4"].requirement == "pyspark==3.4.1"
    assert RUNTIMES["3.4"].adjustments == ()  # pyspark 3.4 supports Python 3.11 as it is


def test_local_master_counts_the_cores_asked_for_capped_at_the_machine() -> None:
    conf = {"spark.executor.cores": "2", "spark.executor.instances": "3"}
    assert local_master(conf, 16) == "local[6]"
    assert local_master(conf, 2) == "local[2]"
    assert local_master({"spark.driver.cores": "4"}, 8) == "local[4]"
    assert local_master({}, 8) == "local[1]"
    dynamic = {
        "spark.executor.cores": "1",
        "spark.dynamicAllocation.enabled": "true",
        "spark.dynamicAllocation.maxExecutors": "5",
    }
    assert local_master(dynamic, 8) == "local[5]"
    assert local_master({"spark.executor.cores": "junk"}, 8) == "local[1]"


def test_submit_argv_ships_files_passes_conf_and_drops_cluster_sizing(tmp_path: Path) -> None:
    spark = SparkSpec(
        entry="main.py",
        runtime="3.4",
        py_files=("a.zip", "b.py"),
        files=("greeting.txt",),
        archives=("bundle.tar#bundle",),
        jars=("extra.jar",),
        conf={
            "spark.driver.cores": "1",
            "spark.executor.cores": "2",
            "spark.executor.instances": "2",
            "spark.executor.memory": "4g",
            "spark.dynamicAllocation.enabled": "true",
            "spark.dynamicAllocation.maxExecutors": "2",
            "spark.sql.shuffle.partitions": "4",
            "spark.ui.enabled": "true",
        },
    )
    snap = tmp_path / "snap"
    tool = tmp_path / "env" / "bin" / "spark-submit"
    argv = submit_argv(
        spark, spark_submit=tool, snapshot=snap, args=["--x", "a b"], machine_cores=2, name="j"
    )
    assert argv[:5] == [str(tool), "--master", "local[2]", "--name", "j"]
    options = dict(zip(argv[5:13:2], argv[6:13:2], strict=True))
    assert options == {
        "--py-files": f"{snap}/a.zip,{snap}/b.py",
        "--files": f"{snap}/greeting.txt",
        "--archives": f"{snap}/bundle.tar#bundle",
        "--jars": f"{snap}/extra.jar",
    }
    confs = [argv[i + 1] for i, word in enumerate(argv) if word == "--conf"]
    assert confs == [
        "spark.sql.shuffle.partitions=4",
        "spark.ui.enabled=false",  # no web UI here, whatever the conf says
        "spark.driver.memory=1g",  # the JVM stays bounded: 1g unless the conf says otherwise
        "spark.driver.host=127.0.0.1",
        "spark.driver.bindAddress=127.0.0.1",
    ]
    assert argv[-3:] == [str(snap / "main.py"), "--x", "a b"]
    assert dropped_conf(spark.conf) == [
        "spark.driver.cores",
        "spark.executor.cores",
        "spark.executor.instances",
        "spark.executor.memory",
        "spark.dynamicAllocation.enabled",
        "spark.dynamicAllocation.maxExecutors",
    ]
    bigger = SparkSpec(entry="m.py", runtime="3.4", conf={"spark.driver.memory": "2g"})
    argv = submit_argv(bigger, spark_submit=tool, snapshot=snap, args=[], machine_cores=1)
    assert "spark.driver.memory=2g" in argv and "--py-files" not in argv


def test_spark_environment_keeps_declared_indexes_and_notes() -> None:
    from local.aml.environments import EnvironmentSpec

    base = EnvironmentSpec(
        name="mine",
        source="conda.yml",
        requirements=("numpy==1.26.4",),
        extra_index_urls=("https://example.invalid/simple",),
        notes=("a note",),
    )
    spark = SparkSpec(entry="m.py", runtime="3.4.0")
    env = spark_environment(base, spark)
    assert env.requirements == ("numpy==1.26.4", "pyspark==3.4.1")
    assert env.extra_index_urls == base.extra_index_urls
    assert env.notes == ("a note",)
    assert spark_environment(None, spark).requirements == ("pyspark==3.4.1",)
