// The tensors a Hugging Face checkpoint of each architecture holds, with their shapes,
// derived from config.json. One source of truth for the loader (what to expect) and the
// test-model generator (what to write).
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "model/model_config.h"

namespace cachet::model {

enum class TensorRole {
  kEmbedding,  // model.embed_tokens.weight [vocab, hidden]
  kNorm,       // RMSNorm weights (layer norms, q/k norms, final norm)
  kLinear,     // projection weights [out, in]
  kBias,       // projection biases [out]
  kLmHead,     // lm_head.weight [vocab, hidden] (absent when tied)
};

struct TensorSpec {
  std::string name;
  std::vector<std::int64_t> shape;
  TensorRole role;
};

// Every tensor the checkpoint must contain, in a stable order.
std::vector<TensorSpec> expected_tensors(const ModelConfig& config);

// Names a checkpoint may contain that cachet ignores (e.g. rotary_emb.inv_freq buffers,
// lm_head.weight of a tied model).
bool is_ignorable_tensor(const ModelConfig& config, const std::string& name);

}  // namespace cachet::model
