#!/usr/bin/env bash
# Proves examples/authz/envoy.yaml is a valid Envoy config with the built module.
# Run from the repository root after scripts/build-filters.sh.
set -euo pipefail
envoy=${ENVOY_BIN:-.venv/bin/envoy}
[ -f dist/filters/authz.wasm ] || scripts/build-filters.sh authz >/dev/null
"$envoy" --mode validate -c examples/authz/envoy.yaml --use-dynamic-base-id -l error >/dev/null
echo "examples/authz: OK"
