#!/usr/bin/env bash
# The test command: set-up, build the filters, then every test layer (unit, harness,
# real Envoy). Tests that need Envoy fail loudly if it is missing; none skip.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"
scripts/setup.sh
scripts/build-filters.sh
export ENVOY_BIN="${ENVOY_BIN:-$root/.venv/bin/envoy}"
# The Docker end-to-end tests (integration/tests/mesh_docker.rs, cli/tests/up_docker.rs)
# run whenever the Docker daemon answers. WASMESH_DOCKER_TESTS=1 demands them (a missing
# Docker then fails them), =0 turns them off. Either way the last line says what ran.
if [[ -z "${WASMESH_DOCKER_TESTS:-}" ]]; then
  if docker info --format '{{.ServerVersion}}' >/dev/null 2>&1; then
    export WASMESH_DOCKER_TESTS=1
    docker_summary="Docker end-to-end tests: RUN (the Docker daemon answered)"
  else
    export WASMESH_DOCKER_TESTS=0
    docker_summary="Docker end-to-end tests: NOT RUN, no reachable Docker daemon (mesh_docker and up_docker tested nothing)"
  fi
elif [[ "$WASMESH_DOCKER_TESTS" == 1 ]]; then
  docker_summary="Docker end-to-end tests: RUN (WASMESH_DOCKER_TESTS=1)"
else
  docker_summary="Docker end-to-end tests: NOT RUN (WASMESH_DOCKER_TESTS=$WASMESH_DOCKER_TESTS)"
fi
# On every exit, pass or fail, so a red run still says whether Docker was exercised.
trap 'echo; echo "== summary: $docker_summary"' EXIT
# Every layer but the doc tests, then the doc tests in a cargo run of their own. Some
# tests build tools with `cargo build -p ...` into target/debug, where crates that are
# also cdylibs (the filters, the mesh module) have unhashed file names: such a build
# with other features overwrites the rlib the test build linked against. Test binaries
# are linked by then, but rustdoc runs last and reads those rlibs; a fresh cargo run
# notices the change and rebuilds them first.
status=0
cargo test --workspace --no-fail-fast --lib --bins --tests --examples "$@" || status=$?
cargo test --workspace --no-fail-fast --doc "$@" || status=$?
# The filters' harness tests again, each filter now a stage of the one-VM mesh module
# with all seven stages (filters/testkit/src/under_test.rs): the same tests, the same outcomes.
WASMESH_HARNESS_MODULE=mesh cargo test --no-fail-fast \
  -p wasmesh-authz -p wasmesh-body -p wasmesh-cors -p wasmesh-fault -p wasmesh-headers -p wasmesh-ratelimit -p wasmesh-telemetry \
  --test harness --test proptest || status=$?
exit $status
