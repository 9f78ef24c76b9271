#!/usr/bin/env bash
# README command 2: install what is missing, build, run the whole test suite; then
#  - the unit and integration tests again under AddressSanitizer + UndefinedBehaviorSanitizer
#    (LeakSanitizer on);
#  - the concurrency tests under ThreadSanitizer;
#  - every fuzz target for CACHET_FUZZ_SECONDS (default 60) each, from its corpus.
# CI runs exactly this (.ci/run). CACHET_SKIP_ASAN / CACHET_SKIP_TSAN / CACHET_SKIP_FUZZ=1
# leave a stage out.
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
if [ "${CACHET_SKIP_TSAN:-0}" != "1" ]; then
  # The tests where threads meet: submit/stream/abort from many threads, engine teardown
  # with requests in flight, the failed state and teardown from a callback, n samples of a
  # request streaming and aborted together, the thread pool,
  # concurrent tokenizer use, the soak, the disk tier's I/O thread (and two engines sharing
  # its directory), the HTTP server's handler threads against the engine's (and its metrics,
  # fed from the engine's thread and scraped from a handler's).
  cmake --preset tsan >/dev/null
  cmake --build --preset tsan -j "$JOBS" --target cachet_cli concurrent_clients \
    test_engine_async test_engine_failure test_thread_pool test_poisoned_kv \
    test_tokenizer_roundtrip test_soak test_engine_samples test_kv_disk_tier test_prefix_cache_disk
  ctest --preset tsan -j "$JOBS" \
    -R '^(EngineAsync|EngineFailure|EngineCallbacks|EngineSamples|ThreadPool|PoisonedKv|Concurrency|Soak|DiskTier|PrefixCacheDisk)\.|^example_concurrent_clients$|^serve_behaviour$|^serve_metrics$'
fi
if [ "${CACHET_SKIP_FUZZ:-0}" != "1" ]; then
  scripts/fuzz.sh
fi
