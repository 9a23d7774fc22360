#!/usr/bin/env bash
# Builds every filter for wasm32-wasip1 with the size-tuned `wasm` profile and places
# the modules at dist/filters/<name>.wasm, optimised with wasm-opt when it is present.
# Usage: scripts/build-filters.sh [name ...]   (default: every crate under filters/)
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"

if [ $# -gt 0 ]; then
  names=("$@")
else
  names=()
  for dir in filters/*/; do
    [ -f "$dir/Cargo.toml" ] && names+=("$(basename "$dir")")
  done
fi

packages=()
for name in "${names[@]}"; do packages+=(-p "wasmesh-$name"); done
# Its own target dir, shared with the harness's build helper, so this never waits on
# (or invalidates) the host build, and tests reuse what this built.
cargo build --quiet --target wasm32-wasip1 --profile wasm --target-dir target/wasm "${packages[@]}"

mkdir -p dist/filters
printf '%-12s %10s\n' module bytes
for name in "${names[@]}"; do
  built="target/wasm/wasm32-wasip1/wasm/wasmesh_${name}.wasm"
  out="dist/filters/$name.wasm"
  if command -v wasm-opt >/dev/null; then
    wasm-opt -Oz --strip-debug --strip-producers \
      --enable-bulk-memory --enable-sign-ext --enable-nontrapping-float-to-int --enable-mutable-globals \
      -o "$out.tmp" "$built"
    mv "$out.tmp" "$out"
  else
    cp "$built" "$out"
  fi
  printf '%-12s %10s\n' "$name" "$(stat -c %s "$out")"
done
command -v wasm-opt >/dev/null || echo "(wasm-opt not found: modules are unoptimised; install Debian's binaryen)"
