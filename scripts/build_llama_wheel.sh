#!/usr/bin/env bash
# Build llama-cpp-python's wheel once (a 4-6 minute source build on 2 cores) and keep it,
# with a sha256 file and the build flags, both checked on every later use.
#
# Portable x86-64-v3 build (AVX2, FMA, F16C, BMI2), not -march=native: a native build on a CPU
# with AMX uses ggml's AMX kernels, which segfault on newer Xeons (ggml_backend_amx_mul_mat,
# llama.cpp#20824), and a native wheel breaks when the cache moves to another CPU.
set -euo pipefail
PYTHON="$1"; WHEELS="$2"
VERSION=0.3.36
FLAGS="-DLLAVA_BUILD=OFF -DGGML_NATIVE=OFF"
mkdir -p "$WHEELS"
shopt -s nullglob
for whl in "$WHEELS"/llama_cpp_python-"$VERSION"-*.whl; do
  if [ -f "$whl.sha256" ] && [ "$(cat "$whl.flags" 2>/dev/null)" = "$FLAGS" ] \
    && (cd "$WHEELS" && sha256sum --quiet -c "$(basename "$whl").sha256"); then
    echo "cached: $(basename "$whl") (sha256 ok, $FLAGS)"
    exit 0
  fi
  echo "discarding unverified or differently built wheel $(basename "$whl")"
  rm -f "$whl" "$whl.sha256" "$whl.flags"
done
echo "building llama-cpp-python $VERSION from source (one time, several minutes)..."
tmp="$(mktemp -d)"
trap 'rm -rf "$tmp"' EXIT
# --no-cache-dir: pip's own wheel cache ignores CMAKE_ARGS and could hand back an old build.
CMAKE_ARGS="$FLAGS" CMAKE_BUILD_PARALLEL_LEVEL="$(nproc)" \
  "$PYTHON" -m pip wheel --no-cache-dir --no-deps -w "$tmp" "llama-cpp-python==$VERSION"
for whl in "$tmp"/llama_cpp_python-*.whl; do
  mv "$whl" "$WHEELS/"
  (cd "$WHEELS" && sha256sum "$(basename "$whl")" > "$(basename "$whl").sha256")
  echo "$FLAGS" > "$WHEELS/$(basename "$whl").flags"
  echo "built and cached: $(basename "$whl")"
done
