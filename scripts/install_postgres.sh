#!/usr/bin/env bash
# Postgres's server programs (Debian's postgresql: initdb, pg_ctl) for the tests and benchmarks of
# the shared state (AIMESH_DATABASE_URL): they start a throw-away cluster of their own
# (foundation/postgres_server.py); no server is started or enabled here. Idempotent and
# non-interactive: does nothing when initdb is present; without apt rights it says so (those
# tests then skip, each with the reason).
set -euo pipefail

if command -v initdb >/dev/null 2>&1 || compgen -G "/usr/lib/postgresql/*/bin/initdb" >/dev/null; then
  exit 0
fi
SUDO=()
if [ "$(id -u)" -ne 0 ]; then SUDO=(sudo -n); fi
if [ "$(id -u)" -eq 0 ] || sudo -n true 2>/dev/null; then
  echo "==> apt-get install postgresql"
  export DEBIAN_FRONTEND=noninteractive
  "${SUDO[@]}" apt-get update -qq
  "${SUDO[@]}" apt-get install -y -qq --no-install-recommends postgresql
  # Debian's package starts a system cluster: the mesh needs none of its own
  "${SUDO[@]}" service postgresql stop >/dev/null 2>&1 || true
else
  echo "==> postgresql not installed (needs root or sudo): the Postgres tests will skip"
fi
