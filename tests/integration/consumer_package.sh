#!/usr/bin/env bash
# Installs cachet into a temporary prefix, checks that the installed libcachet.so exports
# only cachet's API, builds examples/consumer against it with find_package(cachet), and runs
# it on a tiny model.
#   consumer_package.sh SOURCE_DIR BUILD_DIR CACHET_CLI
set -euo pipefail
src=$1 build=$2 cli=$3
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
cmake --install "$build" --prefix "$work/prefix" >/dev/null
installed=$(find "$work/prefix" -name 'libcachet.so.*.*.*' -type f | head -1)
report=$("$(dirname "$0")/exported_symbols.sh" "$installed")
echo "${report%%$'\n'*}"
cmake -S "$src/examples/consumer" -B "$work/build" -G Ninja -DCMAKE_PREFIX_PATH="$work/prefix" \
  -DCMAKE_BUILD_TYPE=Release >/dev/null
cmake --build "$work/build" >/dev/null
"$cli" make-model --arch llama --preset tiny --seed 3 --out "$work/model" 2>/dev/null
LD_LIBRARY_PATH="$work/prefix/lib:$work/prefix/lib64:${LD_LIBRARY_PATH:-}" "$work/build/consumer" "$work/model"
