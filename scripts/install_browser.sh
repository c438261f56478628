#!/usr/bin/env bash
# Headless Chromium for the dashboard's browser test (tests/dashboard/test_browser.py).
# Debian's chromium (a test tool's own browser download is not reachable offline) plus the
# Python playwright driver, which drives it through `executable_path`. Idempotent and
# non-interactive: does nothing when both are present.
set -euo pipefail
cd "$(dirname "$0")/.."

VENV="${AIMESH_VENV:-.venv}"
CACHE="${AIMESH_CACHE_DIR:-$HOME/.cache/aimesh}"
PACKAGES=(chromium fonts-liberation fonts-dejavu-core)

missing=()
for pkg in "${PACKAGES[@]}"; do
  dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "install ok installed" || missing+=("$pkg")
done
if [ "${#missing[@]}" -gt 0 ]; then
  SUDO=()
  if [ "$(id -u)" -ne 0 ]; then SUDO=(sudo -n); fi
  echo "==> apt-get install ${missing[*]}"
  export DEBIAN_FRONTEND=noninteractive
  "${SUDO[@]}" apt-get update -qq
  "${SUDO[@]}" apt-get install -y -qq "${missing[@]}"
fi

if ! "$VENV/bin/python" -c "import playwright.sync_api" >/dev/null 2>&1; then
  echo "==> pip install playwright"
  PIP_CACHE_DIR="$CACHE/pip" PIP_DISABLE_PIP_VERSION_CHECK=1 \
    "$VENV/bin/python" -m pip install -q "playwright>=1.50,<2"
fi

chromium --version 2>/dev/null | head -n 1 || { echo "chromium is not on PATH" >&2; exit 1; }
