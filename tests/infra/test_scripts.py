"""The azd hook scripts, run against a recording fake of the az CLI."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from pathlib import Path

import pytest

from tests.infra.bicep import INFRA

FAKE_AZ = r"""#!/usr/bin/env bash
# Records every call; answers the few queries the scripts make.
log="$FAKE_AZ_LOG"
echo "az $*" >>"$log"
case "$*" in
  "functionapp function list"*)
    for fn in $FAKE_FUNCTIONS; do echo "$FAKE_APP/$fn"; done ;;
  *"systemKeys.blobs_extension"*) echo "blobs-key-123" ;;
  *"functionKeys.default"*) echo "function-key-456" ;;
  "keyvault secret set"*)
    count="$FAKE_AZ_LOG.kv"
    n="$(cat "$count" 2>/dev/null || echo 0)"
    echo $((n + 1)) >"$count"
    if (( n < ${FAKE_KV_REFUSALS:-0} )); then
      echo "ERROR: (Forbidden) Caller is not authorized to perform action on resource." >&2
      echo "Code: Forbidden  Inner error: ForbiddenByRbac" >&2
      exit 1
    fi
    if [[ -n "${FAKE_KV_ERROR:-}" ]]; then echo "$FAKE_KV_ERROR" >&2; exit 1; fi ;;
  "eventgrid system-topic event-subscription list"*)
    [[ -n "${FAKE_TOPIC_MISSING:-}" ]] && exit 3
    for name in ${FAKE_SUBSCRIPTIONS:-}; do echo "$name"; done ;;
  "eventgrid system-topic event-subscription show"*)
    for pair in ${FAKE_LEGACY:-}; do
      [[ "$*" == *"--name ${pair%%=*} "* ]] && { echo "${pair#*=}"; exit 0; }
    done
    exit 3 ;;
  "deployment group create"*)
    for arg in "$@"; do
      case "$arg" in @*) cp "${arg#@}" "$FAKE_AZ_LOG.params.json" ;; esac
    done ;;
esac
"""

APP_ID = "/subscriptions/s/resourceGroups/rg-dev/providers/Microsoft.Web/sites/func-abc"
FUNCTIONS = (
    "on_raw_blob_created on_model_registered on_run_status_changed on_run_completed on_health_get"
)


@pytest.fixture
def fake_bin(tmp_path: Path) -> Path:
    if shutil.which("bash") is None:
        pytest.skip("bash is not installed")
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    (bin_dir / "az").write_text(FAKE_AZ)
    (bin_dir / "curl").write_text("#!/usr/bin/env bash\nexit 0\n")
    for tool in bin_dir.iterdir():
        tool.chmod(0o755)
    return bin_dir


def _env(fake_bin: Path, tmp_path: Path, functions: str) -> dict[str, str]:
    return {
        "PATH": f"{fake_bin}{os.pathsep}{os.environ['PATH']}",
        "FAKE_AZ_LOG": str(tmp_path / "az.log"),
        "FAKE_APP": "func-abc",
        "FAKE_FUNCTIONS": functions,
        "MLOPS_POSTDEPLOY_ATTEMPTS": "2",
        "MLOPS_POSTDEPLOY_DELAY_SECONDS": "0",
        "MLOPS_POSTDEPLOY_ROLE_DELAY_SECONDS": "0",
        "AZURE_RESOURCE_GROUP": "rg-dev",
        "AZURE_FUNCTION_APP_NAME": "func-abc",
        "AZURE_FUNCTION_APP_URL": "https://func-abc.example",
        "AZURE_FUNCTION_APP_ID": APP_ID,
        "AZURE_KEY_VAULT_NAME": "kv-abc",
        "AZURE_STORAGE_ACCOUNT_ID": "/subscriptions/s/resourceGroups/rg-dev/providers/x/st",
        "AZURE_DATALAKE_SYSTEM_TOPIC_NAME": "evgt-dl-abc",
        "AZURE_DEADLETTER_CONTAINER_NAME": "eventgrid-deadletter",
        "AZURE_RAW_CONTAINER_NAME": "raw",
        "AZURE_AML_RESOURCE_GROUP": "rg-ml",
        "AZURE_AML_SYSTEM_TOPIC_NAME": "evgt-aml-abc",
    }


def _run(script: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["bash", str(INFRA / "scripts" / script)],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def test_postdeploy_stores_the_function_key_and_deploys_the_subscriptions(
    fake_bin: Path, tmp_path: Path
) -> None:
    proc = _run("postdeploy.sh", _env(fake_bin, tmp_path, FUNCTIONS))
    assert proc.returncode == 0, proc.stderr
    calls = (tmp_path / "az.log").read_text().splitlines()
    secret = [c for c in calls if c.startswith("az keyvault secret set")]
    assert secret == [
        "az keyvault secret set --vault-name kv-abc --name function-app-key "
        "--value function-key-456 --output none"
    ]
    (deployment,) = [c for c in calls if c.startswith("az deployment group create")]
    assert "--resource-group rg-dev" in deployment
    assert str(INFRA / "event-subscriptions.bicep") in deployment
    # The key travels in a parameters file, never on the command line or in the output.
    assert "blobs-key-123" not in deployment
    assert "blobs-key-123" not in proc.stdout + proc.stderr
    params = json.loads((tmp_path / "az.log.params.json").read_text())["parameters"]
    assert params["blobsExtensionKey"]["value"] == "blobs-key-123"
    assert params["amlSystemTopicName"]["value"] == "evgt-aml-abc"
    assert params["rawContainerName"]["value"] == "raw"
    assert params["modelNamePrefix"]["value"] == "forecast-"
    # The same deployment is previewed (what-if) before it is applied.
    (preview,) = [c for c in calls if c.startswith("az deployment group what-if")]
    assert calls.index(preview) < calls.index(deployment)
    assert preview.replace("what-if", "create").split("--result-format")[0].strip() == (
        deployment.split("--output")[0].strip()
    )


def test_postdeploy_passes_the_model_name_prefix_on(fake_bin: Path, tmp_path: Path) -> None:
    env = {**_env(fake_bin, tmp_path, FUNCTIONS), "AZURE_MODEL_NAME_PREFIX": "demand-"}
    proc = _run("postdeploy.sh", env)
    assert proc.returncode == 0, proc.stderr
    params = json.loads((tmp_path / "az.log.params.json").read_text())["parameters"]
    assert params["modelNamePrefix"]["value"] == "demand-"


def test_postdeploy_stops_when_a_targeted_function_is_missing(
    fake_bin: Path, tmp_path: Path
) -> None:
    proc = _run("postdeploy.sh", _env(fake_bin, tmp_path, "on_health_get on_model_registered"))
    assert proc.returncode != 0
    assert "on_raw_blob_created" in proc.stderr
    calls = (tmp_path / "az.log").read_text()
    assert "deployment group create" not in calls
    assert "keyvault secret set" not in calls


def _calls(tmp_path: Path, prefix: str) -> list[str]:
    return [c for c in (tmp_path / "az.log").read_text().splitlines() if c.startswith(prefix)]


def test_postdeploy_retries_the_secret_while_its_role_is_being_applied(
    fake_bin: Path, tmp_path: Path
) -> None:
    env = {**_env(fake_bin, tmp_path, FUNCTIONS), "FAKE_KV_REFUSALS": "2"}
    proc = _run("postdeploy.sh", env)
    assert proc.returncode == 0, proc.stderr
    assert len(_calls(tmp_path, "az keyvault secret set")) == 3
    assert proc.stdout.count("retrying in") == 2
    assert "Stored the function key" in proc.stdout
    assert _calls(tmp_path, "az deployment group create")


def test_postdeploy_gives_up_on_a_refused_secret_with_the_role_to_check(
    fake_bin: Path, tmp_path: Path
) -> None:
    env = {
        **_env(fake_bin, tmp_path, FUNCTIONS),
        "FAKE_KV_REFUSALS": "99",
        "MLOPS_POSTDEPLOY_ROLE_ATTEMPTS": "4",
    }
    proc = _run("postdeploy.sh", env)
    assert proc.returncode != 0
    assert len(_calls(tmp_path, "az keyvault secret set")) == 4  # bounded
    assert "Key Vault Secrets Officer" in proc.stderr and "after 4 attempts" in proc.stderr
    assert "function-key-456" not in proc.stdout + proc.stderr
    assert not _calls(tmp_path, "az deployment group create")


def test_postdeploy_does_not_retry_what_a_role_cannot_fix(fake_bin: Path, tmp_path: Path) -> None:
    env = {
        **_env(fake_bin, tmp_path, FUNCTIONS),
        "FAKE_KV_ERROR": "ERROR: (VaultNotFound) The vault kv-abc was not found.",
    }
    proc = _run("postdeploy.sh", env)
    assert proc.returncode != 0 and "VaultNotFound" in proc.stderr
    assert len(_calls(tmp_path, "az keyvault secret set")) == 1


def test_postdeploy_removes_only_this_app_s_subscriptions_under_the_old_names(
    fake_bin: Path, tmp_path: Path
) -> None:
    other_app = APP_ID.replace("func-abc", "func-other")
    env = {
        **_env(fake_bin, tmp_path, FUNCTIONS),
        "FAKE_LEGACY": f"aml-dataset-drift-detected={APP_ID}/functions/on_dataset_drift_detected "
        f"aml-run-completed={other_app}/functions/on_run_completed",
    }
    proc = _run("postdeploy.sh", env)
    assert proc.returncode == 0, proc.stderr
    deleted = _calls(tmp_path, "az eventgrid system-topic event-subscription delete")
    assert len(deleted) == 1 and "--name aml-dataset-drift-detected " in deleted[0]
    assert "--resource-group rg-ml --system-topic-name evgt-aml-abc" in deleted[0]


def _down_env(fake_bin: Path, tmp_path: Path, **extra: str) -> dict[str, str]:
    workspace = (
        "/subscriptions/s/resourceGroups/rg-ml/providers/"
        "Microsoft.MachineLearningServices/workspaces/mlw"
    )
    return {
        **_env(fake_bin, tmp_path, FUNCTIONS),
        "AZURE_AML_WORKSPACE_ID": workspace,
        "AZURE_AML_DATASTORE_NAME": "mlops_abc",
        "AZURE_AML_COMPUTE_NAME": "mlops-abc",
        "AZURE_APP_PRINCIPAL_ID": "app-principal",
        "AZURE_AML_COMPUTE_PRINCIPAL_ID": "compute-principal",
        **extra,
    }


def test_predown_removes_what_this_deployment_added_to_the_workspace(
    fake_bin: Path, tmp_path: Path
) -> None:
    env = _down_env(
        fake_bin,
        tmp_path,
        AZURE_AML_SYSTEM_TOPIC_CREATED="true",
        FAKE_SUBSCRIPTIONS="func-abc-model-registered func-abc-run-completed",
    )
    proc = _run("predown.sh", env)
    assert proc.returncode == 0, proc.stderr
    deleted = _calls(tmp_path, "az eventgrid system-topic event-subscription delete")
    assert [c.split("--name ")[1].split()[0] for c in deleted] == [
        "func-abc-model-registered",
        "func-abc-run-completed",
    ]
    assignments = _calls(tmp_path, "az role assignment delete")
    assert [c.split("--assignee ")[1].split()[0] for c in assignments] == [
        "app-principal",
        "compute-principal",
    ]
    resources = _calls(tmp_path, "az resource delete")
    assert [c.split("--ids ")[1].split()[0].rsplit("/", 2)[1:] for c in resources] == [
        ["computes", "mlops-abc"],
        ["datastores", "mlops_abc"],
    ]
    # Nothing else subscribes to the topic this deployment created: it goes too.
    assert _calls(
        tmp_path, "az eventgrid system-topic delete --resource-group rg-ml --name evgt-aml-abc"
    )


def test_predown_keeps_a_topic_that_others_subscribe_to_or_that_it_did_not_create(
    fake_bin: Path, tmp_path: Path
) -> None:
    shared = "func-abc-model-registered func-prod-model-registered func-prod-run-completed"
    for created, subscriptions in (("true", shared), ("false", "func-abc-run-completed")):
        log = tmp_path / "az.log"
        log.unlink(missing_ok=True)
        env = _down_env(
            fake_bin,
            tmp_path,
            AZURE_AML_SYSTEM_TOPIC_CREATED=created,
            FAKE_SUBSCRIPTIONS=subscriptions,
        )
        proc = _run("predown.sh", env)
        assert proc.returncode == 0, proc.stderr
        deleted = _calls(tmp_path, "az eventgrid system-topic event-subscription delete")
        assert all("--name func-abc-" in c for c in deleted) and deleted
        assert not _calls(tmp_path, "az eventgrid system-topic delete")
        assert "Kept system topic evgt-aml-abc" in proc.stdout


def test_predown_deletes_no_topic_it_cannot_see(fake_bin: Path, tmp_path: Path) -> None:
    env = _down_env(
        fake_bin, tmp_path, AZURE_AML_SYSTEM_TOPIC_CREATED="true", FAKE_TOPIC_MISSING="1"
    )
    proc = _run("predown.sh", env)
    assert proc.returncode == 0, proc.stderr
    assert not _calls(tmp_path, "az eventgrid system-topic delete")


def test_preprovision_selects_the_parameter_file_of_the_profile(tmp_path: Path) -> None:
    infra = tmp_path / "infra"
    (infra / "scripts").mkdir(parents=True)
    shutil.copy(INFRA / "scripts" / "preprovision.sh", infra / "scripts")
    for name in ("dev", "prod"):
        shutil.copy(INFRA / f"main.{name}.parameters.json", infra)
    env = {
        "PATH": os.environ["PATH"],
        "AZURE_ENV_NAME": "dev-alice",
        "MLOPS_PARAMETERS": "prod",
        "AML_WORKSPACE_NAME": "mlw",
        "AML_RESOURCE_GROUP": "rg-ml",
        "MLOPS_ALERT_TO": "ops@contoso.com",
    }
    proc = subprocess.run(
        ["bash", str(infra / "scripts" / "preprovision.sh")],
        env=env,
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr
    assert (infra / "main.parameters.json").read_bytes() == (
        infra / "main.prod.parameters.json"
    ).read_bytes()


def test_preprovision_names_every_missing_value_and_unknown_profile(tmp_path: Path) -> None:
    env = {"PATH": os.environ["PATH"], "AZURE_ENV_NAME": "dev"}
    proc = _run("preprovision.sh", env)
    assert proc.returncode != 0
    for name in ("AML_WORKSPACE_NAME", "AML_RESOURCE_GROUP", "MLOPS_ALERT_TO"):
        assert f"azd env set {name}" in proc.stderr
    assert not (INFRA / "main.parameters.json").exists()
    env = {"PATH": os.environ["PATH"], "AZURE_ENV_NAME": "staging"}
    proc = _run("preprovision.sh", env)
    assert proc.returncode != 0
    assert "MLOPS_PARAMETERS" in proc.stderr
    assert "dev" in proc.stderr and "prod" in proc.stderr
