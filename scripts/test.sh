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
# The filters' harness tests again, each filter now a stage of the one-VM mesh module
# with all five stages (filters/testkit/src/under_test.rs): the same tests, the same outcomes.
WASMESH_HARNESS_MODULE=mesh cargo test --no-fail-fast \
  -p wasmesh-authz -p wasmesh-fault -p wasmesh-headers -p wasmesh-ratelimit -p wasmesh-telemetry \
  --test harness --test proptest
