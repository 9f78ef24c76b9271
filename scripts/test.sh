#!/usr/bin/env bash
# README command 2: install what is missing, build, run the whole test suite; then the
# unit and integration tests again under AddressSanitizer + UndefinedBehaviorSanitizer.
# CI runs exactly this (.ci/run).
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/install-deps.sh
JOBS=${CACHET_JOBS:-$(nproc)}
cmake --preset default >/dev/null
cmake --build --preset default -j "$JOBS"
ctest --preset default -j "$JOBS"
if [ "${CACHET_SKIP_ASAN:-0}" != "1" ]; then
  cmake --preset asan >/dev/null
  cmake --build --preset asan -j "$JOBS"
  ctest --preset asan -j "$JOBS" -L 'unit|integration'
fi
