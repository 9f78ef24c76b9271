// A tiny random-weight model directory (`cachet make-model --preset tiny`) for engine tests.
#pragma once

#include <cstdint>

#include "cachet/config.h"
#include "cachet/sampling.h"
#include "model/make_model.h"
#include "model/model_config.h"
#include "support/test_support.h"

namespace cachet::testing {

struct TinyModel {
  TempDir dir;
  model::ModelConfig config;

  explicit TinyModel(model::Arch arch = model::Arch::kQwen3, std::uint64_t seed = 11);

  int vocab() const { return config.vocab_size; }
  // CPU engine options for this model: thousands of KV blocks (nothing is evicted unless a
  // test says so) and one thread unless asked (the test machine may have two cores for all).
  EngineConfig engine_config(std::int32_t block_size = 4, bool caching = true,
                             int threads = 1) const;
};

// Greedy decoding of exactly `max_tokens` tokens (EOS ignored).
inline SamplingParams greedy(int max_tokens) {
  SamplingParams p;
  p.temperature = 0.0f;
  p.max_tokens = max_tokens;
  p.ignore_eos = true;
  return p;
}

}  // namespace cachet::testing
