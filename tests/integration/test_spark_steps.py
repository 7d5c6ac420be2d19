"""A spark node runs as Azure ML's serverless Spark runs it: spark-submit in its runtime's
environment, in local mode, with the node's shipped files, conf and rendered args.

The real parts: the pyspark of the runtime (built by uv into a step environment), a JVM, the
executor's snapshot, bindings, step record and MLflow child run. One pipeline, one JVM start.
The set-up (``make test``) installs Java when it is missing, so CI never skips this test.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest

from local.aml import LocalExecutor, sqlite_tracking_uri

pytestmark = pytest.mark.integration

PIPELINE = Path(__file__).resolve().parents[1] / "fixtures" / "aml" / "spark" / "pipeline.yml"


def require_java() -> None:
    if shutil.which("java"):
        return
    message = "Java is not installed (Debian: apt-get install -y openjdk-17-jre-headless)"
    if os.environ.get("CI", "").lower() == "true":
        pytest.fail(message)
    pytest.skip(message)


def test_an_inline_spark_node_runs_with_its_files_conf_and_args(tmp_path: Path) -> None:
    require_java()
    tracking = sqlite_tracking_uri(tmp_path / "mlflow")
    executor = LocalExecutor(tmp_path / "aml", tracking_uri=tracking, step_timeout=600)
    record = executor.run(executor.submit(PIPELINE).name)

    step = record.steps["count"]
    assert record.status == "Completed", record.error
    assert step.kind == "spark" and step.exit_code == 0
    assert step.environment.startswith("spark-3.4-")
    # spark-submit from the runtime's environment, in local mode sized by the conf.
    assert step.command.startswith(str(Path(step.python).parent / "spark-submit"))
    assert "--master 'local[" in step.command and "--conf spark.driver.memory=1g" in step.command
    assert "spark.executor.instances" not in step.command
    # The output folder was handed over, not created: Spark's writer refuses an existing one.
    out = Path(step.outputs["counted"])
    assert out == Path(record.outputs["counted"])
    part = next(out.glob("part-*.csv"))
    assert part.read_text().splitlines() == [
        "region,n,greeting,label",
        "north,3,HELLO NORTH!,a b&c",
        "south,2,HELLO SOUTH!,a b&c",
    ]
    log = Path(step.log_path).read_text()
    assert "master local[" in log
    job_log = (executor.store.job_dir(record.name) / "logs" / "job_log.txt").read_text()
    assert "conf that only sizes a cluster is left out: spark.driver.cores=1" in job_log
    assert "instance_type standard_e4s_v3 is ignored" in job_log

    from mlflow.tracking import MlflowClient

    run = MlflowClient(tracking).get_run(step.run_id)
    assert run.info.status == "FINISHED"
    assert run.data.tags["mlflow.parentRunId"] == record.run_id
