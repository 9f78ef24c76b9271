#!/usr/bin/env bash
# Builds and runs the GPU tests and benchmarks on a GPU machine that has the CUDA toolkit
# but none of the Debian -dev packages (a lent device with no network). The packages come
# as .deb files in .deps (../shared/tools/offline-deps.sh fetch .deps on a Debian machine),
# unpacked under .deps/root; nothing outside the repository is touched except a
# /work/main symlink when the build directory was configured there.
#   scripts/gpu-session.sh [build] [test] [bench] [quick] [sanitize] [profile] [serve]
#                                                           (default: build test bench)
#   build     configure (once) and build the GPU targets with ninja
#   test      the gpu-labelled test binaries, then tests/gpu/hf_parity.py
#   bench     bench_cuda_kernels (quick: fewer sizes) and bench_cuda_engine
#   sanitize  compute-sanitizer memcheck on the kernel tests and a slice of the backend
#             tests, racecheck and synccheck on the attention kernels, initcheck on a step
#   profile   ncu (no clock control) on one eager decode step of the Llama-3.2-1B shape:
#             time and DRAM bytes per kernel, summed by kernel name (ncu-decode-step.md)
#   serve     cachet bench serve on the GPU, shared-prefix workload, cache on vs off
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

GPU_TARGETS="cachet_cli test_cuda_probe test_weight_upload test_cuda_backend test_attention_kernels
             test_cuda_ops test_cuda_sampling test_cuda_engine_embedding test_cuda_host_tier bench_cuda_kernels
             bench_cuda_engine"
if [[ " $steps " == *" build "* ]]; then
  if [ ! -f $BUILD/build.ninja ]; then
    cmake -S . -B $BUILD -G Ninja -DCMAKE_BUILD_TYPE=Release -DCACHET_CUDA=ON \
      -DCMAKE_CUDA_ARCHITECTURES=90 -DCACHET_BUILD_EXAMPLES=OFF \
      >"$OUT/configure.log" 2>&1 || { tail -40 "$OUT/configure.log"; exit 1; }
  fi
  # shellcheck disable=SC2086
  ninja -C $BUILD $GPU_TARGETS >"$OUT/build.log" 2>&1 ||
    { grep -E -A12 'error|FAILED' "$OUT/build.log" | head -120; exit 1; }
  echo "build ok"
fi
if [[ " $steps " == *" test "* ]]; then
  for t in test_cuda_probe test_weight_upload test_attention_kernels test_cuda_ops test_cuda_sampling \
    test_cuda_backend test_cuda_engine_embedding test_cuda_host_tier; do
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
if [[ " $steps " == *" sanitize "* ]]; then
  CS=$(command -v compute-sanitizer || echo /usr/local/cuda/bin/compute-sanitizer)
  # tool binary filter: each run under its own time limit (the tools slow kernels 10-100x).
  while read -r tool bin filter; do
    log="$OUT/sanitize-$tool-$bin.log"
    timeout 240 "$CS" --tool "$tool" --error-exitcode 3 $BUILD/tests/$bin --gtest_brief=1 \
      --gtest_filter="$filter" >"$log" 2>&1
    echo "compute-sanitizer $tool $bin ($filter): exit $? $(grep -E 'ERROR SUMMARY' "$log" | tail -1)"
    grep -E -m5 'Invalid|Race|Barrier|Uninitialized|FAILED  \]' "$log"
  done <<'EOF_RUNS'
memcheck test_attention_kernels *
memcheck test_cuda_ops *
memcheck test_cuda_sampling *
memcheck test_cuda_backend CudaBackend.BadRequests*:CudaBackend.GraphsOn*:CudaBackend.Fp16*
racecheck test_attention_kernels PagedAttentionDecode.MatchesReferenceAcrossShapes:PagedAttentionPrefill.MatchesReferenceAcrossShapes
synccheck test_attention_kernels *
initcheck test_cuda_backend CudaBackend.GraphsOn*
EOF_RUNS
fi
if [[ " $steps " == *" profile "* ]]; then
  NCU=$(command -v ncu || echo /usr/local/cuda/bin/ncu)
  timeout 300 "$NCU" --clock-control none --profile-from-start off --print-units base --csv \
    --metrics gpu__time_duration.sum,dram__bytes_read.sum,dram__bytes_write.sum \
    $BUILD/bench/bench_cuda_engine --profile-step 1 >"$OUT/ncu-decode-step.csv" 2>"$OUT/ncu.err"
  echo "ncu: exit $?"
  python3 scripts/ncu_summary.py "$OUT/ncu-decode-step.csv" | tee "$OUT/ncu-decode-step.md"
fi
if [[ " $steps " == *" serve "* ]]; then
  model=/tmp/cachet-serve-llama-3.2-1b
  [ -f $model/config.json ] || $BUILD/bin/cachet make-model --arch llama --preset llama-3.2-1b \
    --dtype bf16 --seed 1 --out $model >"$OUT/make-model.log" 2>&1
  timeout 500 $BUILD/bin/cachet bench serve --model $model --device cuda --workload shared-prefix \
    --groups 4 --requests-per-group 16 --system-len 2048 --question-len 128 --output-len 64 \
    --compare-cache --json "$OUT/serve-shared-prefix.json" >"$OUT/serve.log" 2>&1
  echo "bench serve: exit $?"; tail -40 "$OUT/serve.log"
fi
