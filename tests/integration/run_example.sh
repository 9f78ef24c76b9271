#!/usr/bin/env bash
# Runs one example program against a tiny random-weight Qwen3 model made for the test (with
# the tokenizer at TOKENIZER, or none for "-"): passes when the example exits 0 and, if
# EXPECT is not empty, printed EXPECT as a whole line.
#   run_example.sh CACHET_CLI TOKENIZER|- EXPECT EXAMPLE [ARGS...]
set -euo pipefail
cli=$1 tokenizer=$2 expect=$3 example=$4
shift 4
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
tok=()
[ "$tokenizer" = - ] || tok=(--tokenizer "$tokenizer")
"$cli" make-model --arch qwen3 --preset tiny --seed 11 "${tok[@]}" --out "$work/model" >/dev/null
"$example" "$work/model" "$@" | tee "$work/out"
if [ -n "$expect" ] && ! grep -qxF -- "$expect" "$work/out"; then
  echo "run_example.sh: expected the line '$expect'" >&2
  exit 1
fi
