// One request as the engine tracks it while it runs.
#pragma once

#include <chrono>
#include <cstdint>
#include <optional>
#include <vector>

#include "cachet/engine.h"
#include "kv/block_pool.h"

namespace cachet::engine {

using Clock = std::chrono::steady_clock;

enum class SeqStatus { kWaiting, kRunning, kFinished };

struct Sequence {
  std::size_t index = 0;          // position in the caller's request list
  std::uint64_t arrival = 0;      // submission order; later arrivals are preempted first
  SamplingParams params;
  std::uint64_t seed = 0;         // params.seed or one drawn at submission
  // Prompt then generated tokens:
  // [0, computed) K/V in the cache   [computed, size) still to run through the model
  std::vector<TokenId> tokens;
  std::int32_t num_prompt_tokens = 0;
  std::int32_t num_computed = 0;
  std::vector<kv::BlockId> blocks;  // block table: token i lives in blocks[i / block_size]
  SeqStatus status = SeqStatus::kWaiting;
  RequestOutput output;
  Clock::time_point submitted;
  std::optional<Clock::time_point> first_token_at;

  std::int32_t size() const { return static_cast<std::int32_t>(tokens.size()); }
  std::int32_t num_generated() const { return size() - num_prompt_tokens; }
};

}  // namespace cachet::engine
