#!/usr/bin/env bash
# Builds the libFuzzer targets (preset `fuzz`: clang, ASan + UBSan) and runs each for a
# bounded time, starting from its checked-in corpus (tests/fuzz/corpus/<target>/), which it
# does not modify: new inputs go to build/fuzz/runs/<target>/corpus. Prints executions and
# coverage per target and fails if any target found a crash, a leak, a timeout or a broken
# invariant; the input that did it is left in build/fuzz/runs/<target>/ (crash-*, leak-*,
# timeout-*). To keep it as a regression case, copy it into the target's corpus.
#
#   scripts/fuzz.sh                      every target, 60 s each (CACHET_FUZZ_SECONDS)
#   scripts/fuzz.sh safetensors 600      one target, 10 minutes
set -euo pipefail
cd "$(dirname "$0")/.."
ALL=(safetensors weight_index model_config tokenizer_json tokenizer_encode block_manager chat_template)
if [ $# -ge 1 ]; then targets=("$1"); else targets=("${ALL[@]}"); fi
SECS=${2:-${CACHET_FUZZ_SECONDS:-60}}
JOBS=${CACHET_JOBS:-$(nproc)}

scripts/install-deps.sh fuzz
cmake --preset fuzz >/dev/null
cmake --build --preset fuzz -j "$JOBS" --target "${targets[@]/#/fuzz_}"

runs=build/fuzz/runs
failed=()
printf '%-18s %10s %8s %8s %8s %8s\n' target seconds execs exec/s cov corpus
for t in "${targets[@]}"; do
  dir=$runs/$t
  rm -rf "$dir" && mkdir -p "$dir/corpus"
  dict=()
  case $t in safetensors|weight_index|model_config|tokenizer_json) dict=(-dict=tests/fuzz/json.dict) ;; esac
  set +e
  build/fuzz/tests/fuzz/fuzz_"$t" "$dir/corpus" "tests/fuzz/corpus/$t" "${dict[@]}" \
    -max_total_time="$SECS" -timeout=25 -rss_limit_mb=3072 -print_final_stats=1 \
    -artifact_prefix="$dir/" >"$dir/log.txt" 2>&1
  rc=$?
  set -e
  execs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$dir/log.txt")
  speed=$(sed -n 's/^stat::average_exec_per_sec: *//p' "$dir/log.txt")
  last=$(grep -E '^#[0-9]+' "$dir/log.txt" | tail -1)
  cov=$(sed -n 's/.* cov: \([0-9]*\).*/\1/p' <<<"$last")
  corp=$(sed -n 's/.* corp: \([0-9]*\).*/\1/p' <<<"$last")
  printf '%-18s %10s %8s %8s %8s %8s\n' "$t" "$SECS" "${execs:-?}" "${speed:-?}" "${cov:-?}" "${corp:-?}"
  if [ $rc -ne 0 ]; then
    failed+=("$t")
    echo "--- fuzz_$t failed (exit $rc); the last lines of $dir/log.txt:" >&2
    tail -40 "$dir/log.txt" >&2
    ls "$dir" >&2
  fi
done
if [ ${#failed[@]} -ne 0 ]; then
  echo "fuzzing found problems in: ${failed[*]}" >&2
  exit 1
fi
