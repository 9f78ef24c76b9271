#!/usr/bin/env bash
# README command 1: install what is missing, build, make the demo model if absent, generate,
# then run examples/shared_system_prompt.cpp on the same model.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/install-deps.sh
PRESET=${CACHET_PRESET:-release}
[ -f "build/$PRESET/build.ninja" ] || cmake --preset "$PRESET" >/dev/null
cmake --build --preset "$PRESET" --target cachet_cli shared_system_prompt
CACHET=build/$PRESET/bin/cachet
MODEL=${CACHET_DEMO_MODEL:-models/demo-qwen3-medium}
if [ ! -f "$MODEL/config.json" ]; then
  # Random weights with Qwen3's real tokenizer: the pipeline is real, the words are noise.
  "$CACHET" make-model --arch qwen3 --preset medium --dtype bf16 --seed 7 \
    --tokenizer tests/data/tokenizers/qwen3 --out "$MODEL"
fi
# Three prompts share a system prompt: the prefix cache computes it once (see the
# "from the prefix cache" counts and the stats printed at the end).
"$CACHET" generate --model "$MODEL" --prompts-file examples/demo_prompts.jsonl \
  --max-tokens 24 --temperature 0 --ignore-eos --stats "$@"
# Two rounds of questions against one long system prompt, from C++: per-request cached
# tokens and time to first token, cold round then warm round.
echo
echo "== examples/shared_system_prompt.cpp =="
exec "build/$PRESET/bin/shared_system_prompt" "$MODEL"
