#!/usr/bin/env bash
# Build llama-cpp-python's wheel once (a 4-6 minute source build on 2 cores) and keep it,
# with a sha256 file that is checked on every later use.
set -euo pipefail
PYTHON="$1"; WHEELS="$2"
mkdir -p "$WHEELS"
VERSION=0.3.36
shopt -s nullglob
for whl in "$WHEELS"/llama_cpp_python-"$VERSION"-*.whl; do
  if [ -f "$whl.sha256" ] && (cd "$WHEELS" && sha256sum --quiet -c "$(basename "$whl").sha256"); then
    echo "cached: $(basename "$whl") (sha256 ok)"
    exit 0
  fi
  echo "discarding unverified wheel $(basename "$whl")"; rm -f "$whl" "$whl.sha256"
done
echo "building llama-cpp-python $VERSION from source (one time, several minutes)..."
tmp="$(mktemp -d)"
trap 'rm -rf "$tmp"' EXIT
CMAKE_ARGS="-DLLAVA_BUILD=OFF" CMAKE_BUILD_PARALLEL_LEVEL="$(nproc)" \
  "$PYTHON" -m pip wheel --no-deps -w "$tmp" "llama-cpp-python==$VERSION"
for whl in "$tmp"/llama_cpp_python-*.whl; do
  mv "$whl" "$WHEELS/"
  (cd "$WHEELS" && sha256sum "$(basename "$whl")" > "$(basename "$whl").sha256")
  echo "built and cached: $(basename "$whl")"
done
