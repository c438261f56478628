#!/usr/bin/env bash
# Docker's engine for the docker sandbox backend and its tests: Debian's docker.io (dockerd,
# containerd, runc) where we may use apt (root, or password-less sudo); the docker SDK comes with
# the `docker` extra (scripts/setup.sh). Idempotent and non-interactive: does nothing when
# dockerd is present; without apt rights it says so and leaves the engine to the user (the docker
# tests then skip, each with the reason). scripts/start_docker.sh starts the engine.
set -euo pipefail
cd "$(dirname "$0")/.."

if ! command -v dockerd >/dev/null 2>&1; then
  SUDO=()
  if [ "$(id -u)" -ne 0 ]; then SUDO=(sudo -n); fi
  if [ "$(id -u)" -eq 0 ] || sudo -n true 2>/dev/null; then
    echo "==> apt-get install docker.io"
    export DEBIAN_FRONTEND=noninteractive
    "${SUDO[@]}" apt-get update -qq
    "${SUDO[@]}" apt-get install -y -qq --no-install-recommends docker.io
  else
    echo "==> docker.io not installed (needs root or sudo): the docker sandbox tests will skip"
  fi
fi

