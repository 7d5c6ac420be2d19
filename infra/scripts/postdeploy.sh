#!/usr/bin/env bash
# azd postdeploy hook: the steps that need the deployed code and its keys.
#
# 1. Wake the host and wait until it lists the functions the Event Grid subscriptions target.
# 2. Store the default function key in Key Vault (secret function-app-key) for Data Factory,
#    retrying while the role that allows it is still being applied.
# 3. Read the blobs_extension system key, preview (what-if) and deploy
#    infra/event-subscriptions.bicep: raw BlobCreated -> the blob trigger webhook, Azure ML
#    workspace events -> their functions (ModelRegistered only for the app's models, run events
#    only for its experiments), under names that carry the app's name.
# 4. Remove this app's workspace subscriptions under the names earlier versions used.
#
# Reads the azd environment (azd exports it to hooks). To run it by hand:
#   set -a; eval "$(azd env get-values)"; set +a; infra/scripts/postdeploy.sh
set -euo pipefail

infra_dir="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
attempts="${MLOPS_POSTDEPLOY_ATTEMPTS:-30}"
delay="${MLOPS_POSTDEPLOY_DELAY_SECONDS:-10}"

# shellcheck source=require-env.sh
source "$(dirname "${BASH_SOURCE[0]}")/require-env.sh"
require_env "run azd provision first" \
  AZURE_RESOURCE_GROUP AZURE_FUNCTION_APP_NAME AZURE_FUNCTION_APP_URL AZURE_FUNCTION_APP_ID \
  AZURE_KEY_VAULT_NAME AZURE_STORAGE_ACCOUNT_ID AZURE_DATALAKE_SYSTEM_TOPIC_NAME \
  AZURE_DEADLETTER_CONTAINER_NAME AZURE_RAW_CONTAINER_NAME AZURE_AML_RESOURCE_GROUP \
  AZURE_AML_SYSTEM_TOPIC_NAME

rg="$AZURE_RESOURCE_GROUP"
app="$AZURE_FUNCTION_APP_NAME"
# The functions the subscriptions in infra/event-subscriptions.bicep point at.
expected_functions=(
  on_raw_blob_created on_model_registered on_run_status_changed on_run_completed
)

echo "Waiting for ${app} to list its functions..."
listed=""
for ((i = 1; i <= attempts; i++)); do
  # Any request starts the host; /api/health is anonymous.
  curl --silent --output /dev/null --max-time 30 "${AZURE_FUNCTION_APP_URL}/api/health" || true
  listed="$(az functionapp function list --resource-group "$rg" --name "$app" \
    --query "[].name" --output tsv 2>/dev/null || true)"
  absent=()
  for fn in "${expected_functions[@]}"; do
    grep -qE "(^|/)${fn}\$" <<<"$listed" || absent+=("$fn")
  done
  (( ${#absent[@]} == 0 )) && break
  (( i == attempts )) && {
    echo "error: ${app} does not list: ${absent[*]} (is the code deployed? see the app's log stream)" >&2
    exit 1
  }
  sleep "$delay"
done

blobs_key=""
for ((i = 1; i <= attempts; i++)); do
  blobs_key="$(az functionapp keys list --resource-group "$rg" --name "$app" \
    --query "systemKeys.blobs_extension" --output tsv 2>/dev/null || true)"
  [[ -n "$blobs_key" ]] && break
  (( i == attempts )) && {
    echo "error: ${app} has no blobs_extension system key yet (the host creates it when the blob trigger loads)" >&2
    exit 1
  }
  sleep "$delay"
done

function_key="$(az functionapp keys list --resource-group "$rg" --name "$app" \
  --query "functionKeys.default" --output tsv)"
if [[ -z "$function_key" ]]; then
  echo "error: ${app} has no default function key" >&2
  exit 1
fi
# The role that allows this (Key Vault Secrets Officer, infra/modules/rbac.bicep) was created by
# the provision a moment ago, and role assignments take minutes to apply: retry while the vault
# refuses, with back-off, for about ten minutes at most. Any other error stops at once.
role_attempts="${MLOPS_POSTDEPLOY_ROLE_ATTEMPTS:-12}"
role_delay="${MLOPS_POSTDEPLOY_ROLE_DELAY_SECONDS:-10}"
for ((i = 1; ; i++)); do
  if refusal="$(az keyvault secret set --vault-name "$AZURE_KEY_VAULT_NAME" --name function-app-key \
    --value "$function_key" --output none 2>&1)"; then
    break
  fi
  if ! grep -qiE "forbidden|not authorized|authorizationfailed|does not have (secrets )?set permission" <<<"$refusal"; then
    echo "error: storing the function key in ${AZURE_KEY_VAULT_NAME} failed: ${refusal}" >&2
    exit 1
  fi
  if (( i >= role_attempts )); then
    echo "error: ${AZURE_KEY_VAULT_NAME} still refuses to store the function key after ${i} attempts." >&2
    echo "The deploying principal needs 'Key Vault Secrets Officer' on the vault; infra/modules/rbac.bicep" >&2
    echo "assigns it to main.bicep's principalId (azd fills it in with the signed-in principal). If it" >&2
    echo "is assigned, it has not applied yet: run this script again in a few minutes." >&2
    echo "Last answer: ${refusal}" >&2
    exit 1
  fi
  echo "Key Vault refused the secret (its role assignment may still be applying); retrying in ${role_delay}s (attempt ${i} of ${role_attempts})"
  sleep "$role_delay"
  role_delay=$(( role_delay * 2 > 60 ? 60 : role_delay * 2 ))
done
echo "Stored the function key in ${AZURE_KEY_VAULT_NAME}/function-app-key"

# Keys go through a private parameters file, not the command line (visible to other processes).
params_file="$(mktemp)"
trap 'rm -f "$params_file"' EXIT
chmod 600 "$params_file"
cat >"$params_file" <<JSON
{
  "\$schema": "https://schema.management.azure.com/schemas/2019-04-01/deploymentParameters.json#",
  "contentVersion": "1.0.0.0",
  "parameters": {
    "functionAppName": {"value": "${app}"},
    "blobsExtensionKey": {"value": "${blobs_key}"},
    "dataLakeSystemTopicName": {"value": "${AZURE_DATALAKE_SYSTEM_TOPIC_NAME}"},
    "rawContainerName": {"value": "${AZURE_RAW_CONTAINER_NAME}"},
    "amlResourceGroupName": {"value": "${AZURE_AML_RESOURCE_GROUP}"},
    "amlSystemTopicName": {"value": "${AZURE_AML_SYSTEM_TOPIC_NAME}"},
    "deadLetterStorageId": {"value": "${AZURE_STORAGE_ACCOUNT_ID}"},
    "deadLetterContainerName": {"value": "${AZURE_DEADLETTER_CONTAINER_NAME}"},
    "modelNamePrefix": {"value": "${AZURE_MODEL_NAME_PREFIX-forecast-}"}
  }
}
JSON

echo "Changes the event subscription deployment makes (what-if):"
az deployment group what-if --resource-group "$rg" --name event-subscriptions \
  --template-file "$infra_dir/event-subscriptions.bicep" \
  --parameters "@${params_file}" --result-format ResourceIdOnly
az deployment group create --resource-group "$rg" --name event-subscriptions \
  --template-file "$infra_dir/event-subscriptions.bicep" \
  --parameters "@${params_file}" --output none
echo "Event Grid subscriptions deployed: raw blob-created and Azure ML workspace events"

# Earlier versions named the workspace subscriptions without the app's name (so two deployments
# on one workspace overwrote each other's) and subscribed to the retired DatasetDriftDetected.
# Remove those that point at this app; another deployment's are left alone.
for legacy in aml-model-registered aml-run-terminal-failure aml-monitor-threshold-breach \
  aml-dataset-drift-detected aml-run-completed; do
  target="$(az eventgrid system-topic event-subscription show --resource-group "$AZURE_AML_RESOURCE_GROUP" \
    --system-topic-name "$AZURE_AML_SYSTEM_TOPIC_NAME" --name "$legacy" \
    --query "destination.resourceId" --output tsv 2>/dev/null || true)"
  if [[ -n "$target" && "${target,,}" == "${AZURE_FUNCTION_APP_ID,,}/functions/"* ]]; then
    az eventgrid system-topic event-subscription delete --resource-group "$AZURE_AML_RESOURCE_GROUP" \
      --system-topic-name "$AZURE_AML_SYSTEM_TOPIC_NAME" --name "$legacy" --yes --output none
    echo "Removed the earlier workspace subscription ${legacy}"
  fi
done
