#!/usr/bin/env bash
# The one-sidecar demo (the first README demo, before the local mesh): Envoy with the
# wasmesh headers filter in front of the echo service.
# Prints a curl command to try and runs it once; stays up until Ctrl-C.
# `examples/headers/demo.sh --check` exits after the first request (used by verify scripts).
set -euo pipefail
root=$(cd "$(dirname "$0")/../.." && pwd)
cd "$root"
check=false
[ "${1:-}" = "--check" ] && check=true

scripts/setup.sh
scripts/build-filters.sh headers >/dev/null
cargo build --quiet -p wasmesh-integration --bin echo
envoy="${ENVOY_BIN:-$root/.venv/bin/envoy}"

run=$(mktemp -d)
pids=()
cleanup() {
  for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; done
  for pid in "${pids[@]}"; do wait "$pid" 2>/dev/null || true; done
  rm -rf "$run"
}
trap cleanup EXIT INT TERM

target/debug/echo --port 10001 --name echo >"$run/echo.log" 2>&1 &
pids+=($!)
"$envoy" -c examples/headers/envoy.yaml --use-dynamic-base-id -l warning \
  --log-path "$run/envoy.log" >/dev/null 2>&1 &
pids+=($!)

# Ready when the admin endpoint says LIVE (bounded: 30 s); fail with Envoy's log.
for _ in $(seq 1 300); do
  if curl -fsS http://127.0.0.1:9901/ready 2>/dev/null | grep -q LIVE; then ready=1; break; fi
  if ! kill -0 "${pids[1]}" 2>/dev/null; then break; fi
  sleep 0.1
done
if [ -z "${ready:-}" ]; then
  echo "Envoy did not become ready; its log:" >&2
  cat "$run/envoy.log" >&2
  exit 1
fi

cmd="curl -si http://127.0.0.1:10000/hello/../world"
cat <<MSG

  wasmesh demo is up: Envoy :10000 (admin 127.0.0.1:9901) -> headers filter -> echo :10001

  Try:  $cmd
  The response carries x-wasmesh-demo; the echoed request shows x-wasmesh and
  x-wasmesh-route, which the filter added on the way in.

MSG
$cmd
echo
$check && exit 0
echo "Press Ctrl-C to stop."
wait "${pids[1]}"
