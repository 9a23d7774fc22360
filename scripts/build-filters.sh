#!/usr/bin/env bash
# Builds every filter for wasm32-wasip1 with the size-tuned `wasm` profile and places
# the modules at dist/filters/<name>.wasm, optimised with wasm-opt when it is present.
# Usage: scripts/build-filters.sh [name ...]   (default: every module crate under
# filters/, one that builds a cdylib; filters/testkit is the filters' test support)
#        scripts/build-filters.sh native       the native dynamic module (every stage, in
#                                              release) at dist/native/libwasmesh_native.so
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"

if [ "${1:-}" = native ]; then
  cargo build --quiet --release -p wasmesh-native
  mkdir -p dist/native
  cp target/release/libwasmesh_native.so dist/native/libwasmesh_native.so.tmp
  mv dist/native/libwasmesh_native.so.tmp dist/native/libwasmesh_native.so
  printf '%-12s %10s\n' native "$(stat -c %s dist/native/libwasmesh_native.so)"
  exit 0
fi

if [ $# -gt 0 ]; then
  names=("$@")
else
  names=()
  for dir in filters/*/; do
    # filters/native is the same stages as a native Envoy module: never built for wasm.
    [ "$dir" = filters/native/ ] && continue
    grep -q cdylib "$dir/Cargo.toml" 2>/dev/null && names+=("$(basename "$dir")")
  done
fi

# The mesh module links the other filters as stages: their crates must then leave the
# entry points to it (--cfg wasmesh_bundle), so it is built apart, in a target dir of
# its own. Both target dirs are shared with the harness's build helper (harness/src/build.rs).
packages=()
bundle=false
for name in "${names[@]}"; do
  if [ "$name" = mesh ]; then bundle=true; else packages+=(-p "wasmesh-$name"); fi
done
if [ ${#packages[@]} -gt 0 ]; then
  cargo build --quiet --target wasm32-wasip1 --profile wasm --target-dir target/wasm "${packages[@]}"
fi
if $bundle; then
  RUSTFLAGS="--cfg wasmesh_bundle" cargo build --quiet --target wasm32-wasip1 --profile wasm \
    --target-dir target/wasm-bundle -p wasmesh-mesh
fi

mkdir -p dist/filters
printf '%-12s %10s\n' module bytes
for name in "${names[@]}"; do
  built="target/wasm/wasm32-wasip1/wasm/wasmesh_${name}.wasm"
  [ "$name" = mesh ] && built="target/wasm-bundle/wasm32-wasip1/wasm/wasmesh_mesh.wasm"
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
