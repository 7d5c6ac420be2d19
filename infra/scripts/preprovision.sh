#!/usr/bin/env bash
# azd preprovision hook: pick this environment's parameter file and check the values it needs.
#
# infra/main.<profile>.parameters.json is copied to infra/main.parameters.json, the file azd
# reads (and fills ${VAR} in from the azd environment). The profile is MLOPS_PARAMETERS when set
# (e.g. an environment called dev-alice uses `azd env set MLOPS_PARAMETERS dev`), else the azd
# environment name.
set -euo pipefail

infra_dir="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
profile="${MLOPS_PARAMETERS:-${AZURE_ENV_NAME:-}}"
source_file="$infra_dir/main.${profile}.parameters.json"

if [[ -z "$profile" || ! -f "$source_file" ]]; then
  available="$(cd "$infra_dir" && ls main.*.parameters.json | sed -e 's/^main\.//' -e 's/\.parameters\.json$//' | tr '\n' ' ')"
  echo "error: no parameter file for profile '${profile}' (available: ${available})." >&2
  echo "Set one with: azd env set MLOPS_PARAMETERS <profile>" >&2
  exit 1
fi

missing=()
for name in AML_WORKSPACE_NAME AML_RESOURCE_GROUP MLOPS_ALERT_TO; do
  if [[ -z "${!name:-}" ]]; then
    missing+=("$name")
  fi
done
if (( ${#missing[@]} > 0 )); then
  echo "error: the azd environment lacks: ${missing[*]}" >&2
  for name in "${missing[@]}"; do
    echo "  azd env set $name <value>" >&2
  done
  exit 1
fi

cp "$source_file" "$infra_dir/main.parameters.json"
echo "Using infra/main.${profile}.parameters.json"
