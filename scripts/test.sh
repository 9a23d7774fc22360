#!/usr/bin/env bash
# The test command: set-up, build the filters, then every test layer (unit, harness,
# real Envoy). Tests that need Envoy fail loudly if it is missing; none skip.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"
scripts/setup.sh
scripts/build-filters.sh
export ENVOY_BIN="${ENVOY_BIN:-$root/.venv/bin/envoy}"
cargo test --workspace --no-fail-fast "$@"
