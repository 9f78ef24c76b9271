// cachet — basic value types shared by the public API.
#pragma once

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

// "length", "stop", "error", "abort" (the names vLLM uses).
CACHET_API std::string_view to_string(FinishReason reason);
CACHET_API std::string_view to_string(Device device);

}  // namespace cachet
