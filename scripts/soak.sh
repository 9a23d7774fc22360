#!/usr/bin/env bash
# The soak (docs/reliability.md): the Bookinfo demo mesh in process mode under a
# steady mixed load through its gateway for 10 minutes, every Envoy's RSS and resident
# Wasm linear memory sampled as it runs. Passes when nothing grew 5% or more after the
# warm-up (the first third) and every answer was one the mesh is configured to give.
# Usage: scripts/soak.sh [SECONDS]   (default 600; `cargo test` runs the same for 60)
# Figures: target/soak/report.txt, samples: target/soak/memory.csv.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"
export ENVOY_BIN="${ENVOY_BIN:-$root/.venv/bin/envoy}"
export WASMESH_SOAK_SECS="${1:-600}"
exec cargo test -p wasmesh-integration --test soak -- --nocapture
