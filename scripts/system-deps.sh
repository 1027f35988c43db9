#!/usr/bin/env bash
# System packages the test suite needs on a Debian machine with the local PostgreSQL server:
# pgvector built for that server (Debian bookworm has no package), Chromium for browser
# tests, and docker-compose to validate docker-compose.yml. Idempotent: each step is skipped
# when its result is already there.
set -euo pipefail

log() { printf 'system-deps: %s\n' "$*"; }

if [ "$(id -u)" -ne 0 ] || ! command -v apt-get >/dev/null 2>&1; then
  log "not root on Debian: skipped (install pgvector for your PostgreSQL and chromium yourself)"
  exit 0
fi

apt_updated=0
apt_update() {
  if [ "$apt_updated" -eq 0 ]; then
    apt-get update -qq
    apt_updated=1
  fi
}

# pgvector for every installed PostgreSQL major version that lacks it.
for pg_dir in /usr/lib/postgresql/*; do
  [ -x "$pg_dir/bin/postgres" ] || continue
  major=$(basename "$pg_dir")
  if [ -f "/usr/share/postgresql/$major/extension/vector.control" ]; then
    log "pgvector already installed for PostgreSQL $major"
    continue
  fi
  log "building pgvector for PostgreSQL $major"
  sources=/etc/apt/sources.list.d/spamsift-trixie-src.sources
  if [ ! -f "$sources" ]; then
    cat >"$sources" <<SRC
Types: deb-src
URIs: http://deb.debian.org/debian
Suites: trixie
Components: main
Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg
SRC
  fi
  apt_update
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "postgresql-server-dev-$major" dpkg-dev make gcc >/dev/null
  build=$(mktemp -d)
  (
    cd "$build"
    apt-get source -qq pgvector >/dev/null 2>&1
    cd pgvector-*/
    make -s PG_CONFIG="$pg_dir/bin/pg_config" >/dev/null
    make -s PG_CONFIG="$pg_dir/bin/pg_config" install >/dev/null
  )
  rm -rf "$build"
  log "pgvector installed for PostgreSQL $major"
done

if ! command -v chromium >/dev/null 2>&1; then
  log "installing chromium for browser tests"
  apt_update
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null
fi

if ! command -v docker-compose >/dev/null 2>&1; then
  log "installing docker-compose to validate docker-compose.yml (no Docker engine is needed)"
  apt_update
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq docker-compose >/dev/null
fi
