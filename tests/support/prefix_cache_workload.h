// The prefix-cache integration tests' workloads and comparisons: seeded prompts that share
// prefixes of a few "documents", waves of requests (one by one, or all admitted at once),
// greedy and seeded sampling with logprobs, and the bitwise comparison of two outputs that
// the cache (and every tier of it) must not change.
#pragma once

#include <chrono>
#include <cstdint>
#include <string>
#include <vector>

#include "cachet/engine.h"
#include "support/tiny_model.h"

namespace cachet::testing::workload {

inline constexpr auto kWaitLimit = std::chrono::seconds(30);

// Deterministic, portable random numbers (std distributions differ between libraries).
class Rng {
 public:
  explicit Rng(std::uint64_t seed) : x_(seed * 0x9e3779b97f4a7c15ull + 0x632be59bd9b4e019ull) {}
  std::uint64_t next() {
    std::uint64_t z = (x_ += 0x9e3779b97f4a7c15ull);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
  }
  // Uniform in [lo, hi].
  int uniform(int lo, int hi) {
    return lo + static_cast<int>(next() % static_cast<std::uint64_t>(hi - lo + 1));
  }
  bool chance(int percent) { return uniform(0, 99) < percent; }

 private:
  std::uint64_t x_;
};

// Random token ids in [1, vocab): id 0 is kept for generate_together()'s gate request, so
// that its one-token block (block_size 1) never matches a test prompt.
std::vector<TokenId> prompt(std::uint64_t seed, int length, int vocab);
std::vector<TokenId> concat(std::vector<TokenId> a, const std::vector<TokenId>& b);
// Greedy, exactly max_tokens (EOS ignored), with the top 3 logprobs of every token.
SamplingParams greedy(int max_tokens);
// As greedy(), sampled at temperature 1 from `seed`.
SamplingParams seeded(int max_tokens, std::uint64_t seed);

// Empty when two outputs are identical in everything the cache must not change (tokens,
// finish reason, logprobs and prompt logprobs bit for bit), else the first difference.
std::string diff(const RequestOutput& got, const RequestOutput& want);
// No request failed, and each equals its counterpart (diff()).
void expect_same_outputs(const std::vector<RequestOutput>& got,
                         const std::vector<RequestOutput>& want);
// Every block is free or cached once nothing runs: no request leaks a reference.
void expect_blocks_released(const Engine& engine);

// Submits `requests` while the engine's thread is parked in a callback, so that the next
// engine step sees all of them at once. The gate is a one-token request whose final callback
// blocks; its prompt is token 0, which test prompts never contain, and it counts one query
// token (and 1 / block_size query blocks) in the stats.
std::vector<RequestOutput> generate_together(Engine& engine, const std::vector<Request>& requests);

struct Wave {
  bool together = false;  // one generate_together() call; else one generate() per request
  std::vector<Request> requests;
};

struct WorkloadOptions {
  int num_waves = 4;
  int requests_per_wave = 6;
  bool sequential_only = false;
  bool sampled = true;          // some requests sample with a seed
  bool prompt_logprobs = true;  // some requests ask for prompt logprobs
};

// Prompts built from a few shared "documents": each takes a random fraction (0-100 %) of a
// document's random-length prefix plus a random unique suffix; some are trimmed to end exactly
// on a block boundary, some are shorter than a block, some repeat an earlier prompt exactly.
std::vector<Wave> make_workload(std::uint64_t seed, int vocab, int block_size,
                                const WorkloadOptions& o);
std::vector<RequestOutput> run_workload(Engine& engine, const std::vector<Wave>& waves);
std::int64_t total_hits(const std::vector<RequestOutput>& outputs);

// Outputs of every request alone (one engine, cache off, requests one at a time).
std::vector<RequestOutput> alone_outputs(const TinyModel& m, std::int32_t block_size,
                                         const std::vector<Request>& rs);
// The bytes of a host tier holding `blocks` KV blocks of `m`'s shape.
std::int64_t host_tier_bytes(const TinyModel& m, std::int32_t block_size, std::int64_t blocks);

}  // namespace cachet::testing::workload
