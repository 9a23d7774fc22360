#!/usr/bin/env bash
# Runs Docker Compose with whichever flavour this machine has: the v2 plugin
# (`docker compose`) if present, else the standalone `docker-compose` (Debian's
# package, v1.29). Arguments pass through unchanged:
#   scripts/compose.sh -p bookinfo up -d --wait      (v2 only: --wait)
#   scripts/compose.sh -p bookinfo down -v
#   scripts/compose.sh --which                       prints the command it would use
# Both flavours read docker-compose.yml and take -p/-f the same way. v1.29 rejects a
# top-level `name:` key, so pass the project name with -p.
set -euo pipefail

if docker compose version >/dev/null 2>&1; then
  cmd=(docker compose)
elif command -v docker-compose >/dev/null 2>&1; then
  cmd=(docker-compose)
else
  echo "compose.sh: neither the 'docker compose' plugin nor 'docker-compose' is installed" >&2
  exit 127
fi

if [ "${1:-}" = "--which" ]; then
  echo "${cmd[*]}"
  exit 0
fi
exec "${cmd[@]}" "$@"
