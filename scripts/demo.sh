#!/usr/bin/env bash
# README command 1: install what is missing, build, make the demo model if absent, generate.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/install-deps.sh
PRESET=${CACHET_PRESET:-release}
[ -f "build/$PRESET/build.ninja" ] || cmake --preset "$PRESET" >/dev/null
cmake --build --preset "$PRESET" --target cachet_cli
CACHET=build/$PRESET/bin/cachet
MODEL=${CACHET_DEMO_MODEL:-models/demo-qwen3-medium}
if [ ! -f "$MODEL/config.json" ]; then
  "$CACHET" make-model --arch qwen3 --preset medium --dtype bf16 --seed 7 --out "$MODEL"
fi
# Random weights: the output is token ids, not text (text arrives with the tokenizer).
exec "$CACHET" generate --model "$MODEL" --prompts-file examples/demo_prompts.jsonl \
  --max-tokens 32 --temperature 0 --ignore-eos "$@"
