# Sourced by the azd hooks: require_env HINT NAME... stops the hook, naming every variable of
# the azd environment that is missing or empty, with HINT for what to do about it.
require_env() {
  local hint="$1" name
  shift
  local missing=()
  for name in "$@"; do
    [[ -n "${!name:-}" ]] || missing+=("$name")
  done
  if (( ${#missing[@]} > 0 )); then
    echo "error: missing from the environment: ${missing[*]} (${hint})" >&2
    exit 1
  fi
}
