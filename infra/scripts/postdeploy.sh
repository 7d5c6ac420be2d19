#!/usr/bin/env bash
# azd postdeploy hook: the steps that need the deployed code and its keys.
#
# 1. Wake the host and wait until it lists the functions the Event Grid subscriptions target.
# 2. Store the default function key in Key Vault (secret function-app-key) for Data Factory.
# 3. Read the blobs_extension system key, preview (what-if) and deploy
#    infra/event-subscriptions.bicep: raw BlobCreated -> the blob trigger webhook, Azure ML
#    workspace events -> their functions (ModelRegistered only for the app's models).
#
# Reads the azd environment (azd exports it to hooks). To run it by hand:
#   set -a; eval "$(azd env get-values)"; set +a; infra/scripts/postdeploy.sh
set -euo pipefail

infra_dir="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
attempts="${MLOPS_POSTDEPLOY_ATTEMPTS:-30}"
delay="${MLOPS_POSTDEPLOY_DELAY_SECONDS:-10}"

required=(
  AZURE_RESOURCE_GROUP AZURE_FUNCTION_APP_NAME AZURE_FUNCTION_APP_URL AZURE_KEY_VAULT_NAME
  AZURE_STORAGE_ACCOUNT_ID AZURE_DATALAKE_SYSTEM_TOPIC_NAME AZURE_DEADLETTER_CONTAINER_NAME
  AZURE_RAW_CONTAINER_NAME AZURE_AML_RESOURCE_GROUP AZURE_AML_SYSTEM_TOPIC_NAME
)
missing=()
for name in "${required[@]}"; do
  [[ -n "${!name:-}" ]] || missing+=("$name")
done
if (( ${#missing[@]} > 0 )); then
  echo "error: missing from the environment: ${missing[*]} (run azd provision first)" >&2
  exit 1
fi

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
az keyvault secret set --vault-name "$AZURE_KEY_VAULT_NAME" --name function-app-key \
  --value "$function_key" --output none
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
