// One request as the engine tracks it while it runs.
#pragma once

#include <chrono>
#include <cstdint>
#include <memory>
#include <optional>
#include <vector>

#include "cachet/engine.h"
#include "engine/output_text.h"
#include "kv/kv_cache_manager.h"

namespace cachet::engine {

using Clock = std::chrono::steady_clock;

enum class SeqStatus { kWaiting, kRunning, kFinished };

// One sample of a request (SamplingParams::n of them share its id).
struct Sequence {
  RequestId id = 0;
  std::int32_t sample_index = 0;
  std::uint64_t arrival = 0;  // submission order; later arrivals are preempted first
  SamplingParams params;
  std::uint64_t seed = 0;  // params.seed or one drawn at submission
  // Prompt then generated tokens:
  // [0, num_computed) K/V in the cache   [num_computed, size) still to run through the model
  std::vector<TokenId> tokens;
  std::int32_t num_prompt_tokens = 0;
  std::int32_t num_computed = 0;
  kv::SeqBlocks kv;  // block table, block hashes, cache salt
  bool admitted_before = false;  // prefix-cache statistics count a request's first admission only
  std::optional<CachePin> pin;   // to apply once the prompt is computed (sample 0 only)
  SeqStatus status = SeqStatus::kWaiting;
  RequestOutput output;
  std::unique_ptr<OutputText> text;  // when the model has a tokenizer
  std::size_t num_reported = 0;      // generated tokens already passed to the callback
  std::shared_ptr<RequestCallback> callback;
  Clock::time_point submitted;
  std::optional<Clock::time_point> first_token_at;

  std::int32_t size() const { return static_cast<std::int32_t>(tokens.size()); }
  std::int32_t num_generated() const { return size() - num_prompt_tokens; }
};

}  // namespace cachet::engine
