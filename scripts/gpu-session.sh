#!/usr/bin/env bash
# Builds and runs the GPU tests and benchmarks on a GPU machine that has the CUDA toolkit
# but none of the Debian -dev packages (a lent device with no network). The packages come
# as .deb files in .deps (../shared/tools/offline-deps.sh fetch .deps on a Debian machine),
# unpacked under .deps/root; nothing outside the repository is touched except a
# /work/main symlink when the build directory was configured there.
#   scripts/gpu-session.sh [build] [test] [bench] [quick]   (default: build test bench)
# Logs go to $OUT (default /tmp/cachet-gpu-out).
set -uo pipefail
cd "$(dirname "$0")/.."
OUT=${OUT:-/tmp/cachet-gpu-out}
mkdir -p "$OUT"
steps=${*:-build test bench}
BUILD=build/gpu

if [ -f .deps/offline-deps.sh ]; then
  [ -d .deps/root ] || bash .deps/offline-deps.sh unpack .deps >/dev/null
  # shellcheck disable=SC1091
  source .deps/env.sh
  export PATH="$PWD/.deps/root/usr/bin:$PATH"
fi
# A build directory configured at /work/main (carried from the development machine) keeps
# its absolute paths valid through a symlink.
if [ -f $BUILD/CMakeCache.txt ] && [ ! -e /work/main ]; then
  mkdir -p /work && ln -s "$PWD" /work/main
fi
# The carried build directory names /usr/bin/ccache as its compiler launcher.
[ -x /usr/bin/ccache ] || { printf '#!/bin/sh\nexec "$@"\n' >/usr/bin/ccache && chmod +x /usr/bin/ccache; }
nvidia-smi >"$OUT/nvidia-smi.txt" 2>&1 || true
head -15 "$OUT/nvidia-smi.txt"

GPU_TARGETS="cachet_cli test_cuda_probe test_cuda_backend test_attention_kernels test_cuda_ops
             test_cuda_sampling bench_cuda_kernels bench_cuda_engine"
if [[ " $steps " == *" build "* ]]; then
  if [ ! -f $BUILD/build.ninja ]; then
    cmake -S . -B $BUILD -G Ninja -DCMAKE_BUILD_TYPE=Release -DCACHET_CUDA=ON \
      -DCMAKE_CUDA_ARCHITECTURES=90 -DCACHET_CHECKS=OFF -DCACHET_BUILD_EXAMPLES=OFF \
      >"$OUT/configure.log" 2>&1 || { tail -40 "$OUT/configure.log"; exit 1; }
  fi
  # shellcheck disable=SC2086
  ninja -C $BUILD $GPU_TARGETS >"$OUT/build.log" 2>&1 ||
    { grep -E -A12 'error|FAILED' "$OUT/build.log" | head -120; exit 1; }
  echo "build ok"
fi
if [[ " $steps " == *" test "* ]]; then
  for t in test_cuda_probe test_attention_kernels test_cuda_ops test_cuda_sampling test_cuda_backend; do
    timeout 300 $BUILD/tests/$t --gtest_brief=1 >"$OUT/$t.log" 2>&1
    echo "$t: exit $? $(grep -E '^\[  (PASSED|FAILED|SKIPPED)' "$OUT/$t.log" | tr '\n' ' ')"
    grep -E '^\[ info|Failure|FAILED  \]' "$OUT/$t.log" | head -30
  done
  timeout 600 python3 tests/gpu/hf_parity.py $BUILD/bin/cachet /tmp/hf_parity >"$OUT/hf_parity.log" 2>&1
  echo "hf_parity: exit $?"; tail -15 "$OUT/hf_parity.log"
fi
if [[ " $steps " == *" bench "* ]]; then
  q=""; [[ " $steps " == *" quick "* ]] && q="--quick"
  timeout 300 $BUILD/bench/bench_cuda_kernels $q >"$OUT/bench_cuda_kernels.md" 2>&1
  echo "bench_cuda_kernels: exit $?"; tail -40 "$OUT/bench_cuda_kernels.md"
  timeout 300 $BUILD/bench/bench_cuda_engine >"$OUT/bench_cuda_engine.md" 2>&1
  echo "bench_cuda_engine: exit $?"; tail -20 "$OUT/bench_cuda_engine.md"
fi
