#!/usr/bin/env bash
# Fails unless every dynamic symbol LIBRARY defines is cachet's public API: namespace
# cachet, outside its internal namespaces (engine, kv, backend, model, sampling, util,
# tokenizer internals, tools). No fmt, nlohmann, PCRE2, xxhash, std:: instantiations, ...
#   exported_symbols.sh LIBRARY
set -euo pipefail
lib=$1
symbols=$(nm -D --defined-only -C "$lib" | cut -d' ' -f3-)
count=$(printf '%s\n' "$symbols" | grep -c . || true)
public='^((typeinfo|typeinfo name|vtable) for )?cachet::'
internal='^((typeinfo|typeinfo name|vtable) for )?cachet::(engine|kv|backend|model|sampling|util|tools|detail|tok)[a-z_]*::'
bad=$(printf '%s\n' "$symbols" | grep -vE "$public" || true)
bad+=$(printf '%s\n' "$symbols" | grep -E "$internal" || true)
# The linker's own version node name (a versioned library exports its version script's).
bad=$(printf '%s\n' "$bad" | grep -vE '^$' || true)
if [ -n "$bad" ]; then
  echo "$lib exports $(printf '%s\n' "$bad" | wc -l) of $count symbols outside cachet's API:"
  printf '%s\n' "$bad" | head -40
  exit 1
fi
echo "$lib: $count exported symbols, all cachet's public API"
printf '%s\n' "$symbols" | sed 's/^/  /'
