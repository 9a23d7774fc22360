#!/usr/bin/env bash
# Proves examples/headers/envoy.yaml works: Envoy validates it, and its demo request
# shows the headers the filter adds in both directions.
set -euo pipefail
root=$(cd "$(dirname "$0")/../.." && pwd)
cd "$root"
out=$(examples/headers/demo.sh --check)
echo "$out" | grep -qi '^x-wasmesh-demo: headers filter ran at ' || { echo "FAIL: no x-wasmesh-demo response header"; echo "$out"; exit 1; }
echo "$out" | grep -q '"x-wasmesh","hello from wasmesh"' || { echo "FAIL: upstream did not see x-wasmesh"; echo "$out"; exit 1; }
echo "$out" | grep -q '"x-wasmesh-route","GET /world"' || { echo "FAIL: upstream did not see x-wasmesh-route"; echo "$out"; exit 1; }
echo "examples/headers: OK"
