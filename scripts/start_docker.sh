#!/usr/bin/env bash
# Start Docker's engine for the docker sandbox tests when it is not running and we can (root and
# dockerd installed: scripts/install_docker.sh), then wait until it answers. Idempotent: an
# engine that already answers (DOCKER_HOST or /var/run/docker.sock) is left alone. Never fails
# the build: where no engine can run it says why, and the docker tests skip with that reason.
set -euo pipefail
cd "$(dirname "$0")/.."

VENV="${AIMESH_VENV:-.venv}"
CACHE="${AIMESH_CACHE_DIR:-$HOME/.cache/aimesh}"
WAIT_S="${AIMESH_DOCKERD_WAIT_S:-60}"
LOG="$CACHE/dockerd.log"

engine_answers() { "$VENV/bin/python" -c "import docker; docker.from_env(timeout=5).ping()" >/dev/null 2>&1; }

if engine_answers; then exit 0; fi
if ! command -v dockerd >/dev/null 2>&1; then
  echo "==> no Docker engine: dockerd is not installed (scripts/install_docker.sh needs root)"
  exit 0
fi
if [ "$(id -u)" -ne 0 ]; then
  echo "==> no Docker engine: dockerd is not running and starting it needs root"
  exit 0
fi

mkdir -p "$CACHE"
echo "==> starting dockerd (log: $LOG)"
setsid nohup dockerd >"$LOG" 2>&1 </dev/null &
for _ in $(seq "$WAIT_S"); do
  if engine_answers; then echo "==> dockerd answers"; exit 0; fi
  sleep 1
done
echo "==> dockerd did not answer within ${WAIT_S} s; the docker tests will skip. Its log ends:"
tail -n 5 "$LOG" | sed 's/^/    /'
