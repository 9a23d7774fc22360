#!/usr/bin/env bash
# The benchmark rig, in one command: builds the filters and the do-nothing filter,
# then runs every configuration interleaved (see bench/src/main.rs for the method).
# Extra arguments go to the rig: --duration S, --rounds N, --only a,b; --host-costs
# prices each kind of host call instead (docs/bench/host-costs.md; with --only, just
# the kinds named, docs/bench/host-costs-only.md); --baseline DIR
# adds each filter again with its module from DIR, built from another commit, for an
# A/B comparison in the same run (docs/bench/baseline-compare.md).
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"
scripts/setup.sh
scripts/build-filters.sh >/dev/null
cargo build --quiet --target wasm32-wasip1 --profile wasm --target-dir target/wasm -p wasmesh-bench-noop -p wasmesh-bench-hostcost
cargo build --quiet --release -p wasmesh-bench -p wasmesh-ratelimit-server
# The native dynamic module (target/release/libwasmesh_native.so) for the *-native rows.
cargo build --quiet --release -p wasmesh-native
export ENVOY_BIN="${ENVOY_BIN:-$root/.venv/bin/envoy}"
# The rig (and its load generators) on CPU 1; it pins each Envoy to CPU 0.
exec taskset -c 1 target/release/wasmesh-bench "$@"
