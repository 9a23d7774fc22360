#!/usr/bin/env bash
# The demo: the whole Bookinfo mesh on this machine, in process mode (no Docker):
# the demo services, a sidecar Envoy with the wasmesh filters next to each, the ingress
# gateway and Prometheus (when installed). Builds what it needs, runs `wasmesh up`,
# and prints what to try; the mesh keeps running until `target/release/wasmesh down`.
#
# `scripts/demo.sh --check` is the CI form: up on ports of its own (beside a mesh you
# may have running), requests through the gateway, down; exit status says it all.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"
check=false
if [ "${1:-}" = "--check" ]; then check=true; shift; fi

scripts/setup.sh
scripts/build-filters.sh >/dev/null
cargo build --quiet --release -p wasmesh -p wasmesh-demo
wasmesh=target/release/wasmesh

if ! $check; then
  # Running the demo again restarts the mesh rather than refusing.
  if [ -f .wasmesh/run/state.json ]; then "$wasmesh" down; fi
  exec "$wasmesh" up "$@"
fi

state=.wasmesh/check
gateway=21999
"$wasmesh" down --state-dir "$state" >/dev/null
trap '"$wasmesh" down --state-dir "$state"' EXIT
"$wasmesh" up --state-dir "$state" --port-base 21000 --gateway-port "$gateway" \
  --prometheus-port 21998 "$@"

page=$(curl -fsS "http://127.0.0.1:$gateway/productpage?format=json")
echo "$page" | grep -q '"service":"productpage"' || { echo "unexpected page: $page" >&2; exit 1; }
jason=$(curl -fsS -H 'end-user: jason' "http://127.0.0.1:$gateway/productpage?format=json")
echo "$jason" | grep -q '"instance":"reviews-v2-0"' || { echo "jason did not reach reviews v2: $jason" >&2; exit 1; }
curl -fsS -o /dev/null "http://127.0.0.1:$gateway/productpage"
echo "check: the product page answers through the gateway; end-user: jason reaches reviews v2"
