#!/usr/bin/env bash
# azd predown hook: remove what this deployment added outside its own resource group, before
# `azd down` deletes the group. Only what it created; nothing another deployment may share:
#
# 1. its Event Grid subscriptions on the workspace system topic (named <function app>-...);
# 2. the role assignments of its two identities (the app's and its compute cluster's), in the
#    workspace, the workspace storage and anywhere else;
# 3. its compute cluster and its datastore in the workspace;
# 4. the workspace system topic, only if this deployment created it (AZURE_AML_SYSTEM_TOPIC_CREATED)
#    and no other deployment's subscription remains on it. A workspace has one topic, and the
#    deployments that share it subscribe to it under their own names.
#
# Reads the azd environment (azd exports it to hooks). To run it by hand:
#   set -a; eval "$(azd env get-values)"; set +a; infra/scripts/predown.sh
set -euo pipefail

# shellcheck source=require-env.sh
source "$(dirname "${BASH_SOURCE[0]}")/require-env.sh"
require_env "nothing was removed" \
  AZURE_FUNCTION_APP_NAME AZURE_AML_RESOURCE_GROUP AZURE_AML_SYSTEM_TOPIC_NAME

app="$AZURE_FUNCTION_APP_NAME"
aml_rg="$AZURE_AML_RESOURCE_GROUP"
topic="$AZURE_AML_SYSTEM_TOPIC_NAME"
created="$(tr '[:upper:]' '[:lower:]' <<<"${AZURE_AML_SYSTEM_TOPIC_CREATED:-false}")"
kept=()

warn() { echo "warning: $*" >&2; }

# 1. This deployment's subscriptions; every other one on the topic stays.
others=0
if names="$(az eventgrid system-topic event-subscription list --resource-group "$aml_rg" \
  --system-topic-name "$topic" --query "[].name" --output tsv 2>/dev/null)"; then
  while IFS= read -r name; do
    [[ -n "$name" ]] || continue
    if [[ "$name" == "${app}-"* ]]; then
      az eventgrid system-topic event-subscription delete --resource-group "$aml_rg" \
        --system-topic-name "$topic" --name "$name" --yes --output none \
        && echo "Deleted event subscription ${name}" || warn "could not delete event subscription ${name}"
    else
      others=$((others + 1))
    fi
  done <<<"$names"
else
  warn "could not list the subscriptions of system topic ${topic} in ${aml_rg}; none deleted"
  others=-1
fi

# 2. Role assignments of this deployment's own identities.
for principal in "${AZURE_APP_PRINCIPAL_ID:-}" "${AZURE_AML_COMPUTE_PRINCIPAL_ID:-}"; do
  [[ -n "$principal" ]] || continue
  az role assignment delete --assignee "$principal" --yes --output none \
    && echo "Deleted the role assignments of ${principal}" \
    || warn "could not delete the role assignments of ${principal}"
done

# 3. The compute cluster and the datastore it added to the workspace.
if [[ -n "${AZURE_AML_WORKSPACE_ID:-}" ]]; then
  for child in "computes/${AZURE_AML_COMPUTE_NAME:-}" "datastores/${AZURE_AML_DATASTORE_NAME:-}"; do
    [[ "$child" != */ ]] || continue
    az resource delete --ids "${AZURE_AML_WORKSPACE_ID}/${child}" --output none \
      && echo "Deleted ${child} from the workspace" || warn "could not delete ${child}"
  done
else
  kept+=("the compute cluster and datastore (AZURE_AML_WORKSPACE_ID is not set)")
fi

# 4. The system topic: only ours, and only once nobody else subscribes to it.
if [[ "$created" != "true" ]]; then
  kept+=("system topic ${topic}: this deployment did not create it")
elif (( others != 0 )); then
  kept+=("system topic ${topic}: other deployments' subscriptions remain on it")
else
  az eventgrid system-topic delete --resource-group "$aml_rg" --name "$topic" --yes --output none \
    && echo "Deleted system topic ${topic}" || warn "could not delete system topic ${topic}"
fi

for item in ${kept[@]+"${kept[@]}"}; do
  echo "Kept ${item}"
done
