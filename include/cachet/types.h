// cachet — basic value types shared by the public API.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string_view>

#include "cachet/export.h"

namespace cachet {

// A token id of the model's vocabulary.
using TokenId = std::int32_t;

// Where the engine runs its arithmetic.
enum class Device {
  kAuto,  // CUDA when the library was built with it and a GPU is visible, else CPU (logged)
  kCpu,   // the CPU reference backend, always available
  kCuda,  // the CUDA backend; Engine construction fails clearly without one
};

// Why a request stopped producing tokens.
enum class FinishReason {
  kLength,   // reached SamplingParams::max_tokens or the model's context length
  kStop,     // produced an end-of-sequence token or one of SamplingParams::stop_token_ids
  kError,    // the request was rejected or failed; RequestOutput::error says why
  kAborted,  // the request was cancelled
};

// Why the prefix cache served no more of a request's prompt than it did
// (RequestOutput::cache_miss), decided at the request's first admission.
enum class CacheMissReason {
  kNone,        // it served every prompt token it could (all but the last)
  kCachingOff,  // EngineConfig::enable_prefix_caching is false
  kBypassed,    // the request needs its whole prompt computed (prompt_logprobs)
  kCold,        // nothing of the prompt is cached, nor was evicted recently
  kPrefixEnd,   // a cached prefix matched, and nothing cached continues it
  kEvicted,     // the block after the cached prefix was cached, but evicted (see tier)
  kOtherSalt,   // the prompt's first block is cached, but under another cache_salt
  kDiverged,    // cached blocks continue the matched prefix with other tokens (see at)
};
inline constexpr std::size_t kNumCacheMissReasons = 8;

// Where the cached prefix of a request ended, and why.
struct CacheMiss {
  CacheMissReason reason = CacheMissReason::kNone;
  // The first prompt token the cache did not serve for this reason: for kDiverged, the
  // first token where the prompt differs from every cached continuation (inside a block
  // when in_block; with partial-block reuse the tokens before it were reused).
  std::int32_t at = 0;
  bool in_block = false;
  // kEvicted: the tier that let the block go: "device" (the KV cache, with no host tier to
  // keep it) or "host" (the host tier; a disk tier, when there is one, did not have it).
  std::string_view tier;
};

// "length", "stop", "error", "abort" (the names vLLM uses).
CACHET_API std::string_view to_string(FinishReason reason);
// "none", "caching_off", "bypassed", "cold", "prefix_end", "evicted", "other_salt",
// "diverged".
CACHET_API std::string_view to_string(CacheMissReason reason);
CACHET_API std::string_view to_string(Device device);

}  // namespace cachet
