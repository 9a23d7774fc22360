#!/usr/bin/env bash
# Fuzzes the compiled filters and the mesh module through the harness (see
# filters/testkit/src/fuzz/): the corpus's seeds first, then N requests per target with
# mutated configs and hostile headers, bodies, JWTs and callout replies. Fails on any trap.
#
#   scripts/fuzz.sh                      # 1,000,000 inputs per target, a fresh run seed
#   scripts/fuzz.sh --inputs 10000       # the budget `cargo test` runs
#   scripts/fuzz.sh --target authz --seed 42
#
# A trap prints its batch seed: add it to fuzz/corpus/<target>/seeds.txt, and a
# regression test beside the filter's harness tests.
set -euo pipefail
cd "$(dirname "$0")/.."

inputs=1000000
seed=""
filter=""
while [ $# -gt 0 ]; do
  case "$1" in
    --inputs) inputs="$2"; shift 2 ;;
    --seed) seed="$2"; shift 2 ;;
    --target) filter="no_input_traps_$2"; [ "$2" = mesh ] && filter="no_input_traps_the_mesh_module"; shift 2 ;;
    -h|--help) sed -n '2,11p' "$0"; exit 0 ;;
    *) echo "fuzz.sh: unknown argument $1 (see --help)" >&2; exit 2 ;;
  esac
done
if [ -z "$seed" ]; then
  seed=$(( $(date +%s%N) % 9007199254740991 ))
fi
echo "fuzz.sh: $inputs inputs per target, run seed $seed"
started=$(date +%s)
log="${TMPDIR:-/tmp}/wasmesh-fuzz-$seed.log"
set +e
WASMESH_FUZZ_INPUTS="$inputs" WASMESH_FUZZ_SEED="$seed" \
  cargo test -p wasmesh-testkit --test fuzz -- --nocapture ${filter:+"$filter"} 2>&1 | tee "$log"
status=${PIPESTATUS[0]}
set -e
echo
echo "fuzz.sh: $(( $(date +%s) - started )) s, run seed $seed, log $log"
grep -a -E '^(FUZZ|TRAP)' "$log" || true
exit "$status"
