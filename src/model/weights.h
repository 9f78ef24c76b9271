// Model weights on the host in fp32, checked against config.json.
#pragma once

#include <cstdint>
#include <filesystem>
#include <vector>

#include "model/model_config.h"

namespace cachet::model {

// A dense fp32 tensor; matrices are row-major in Hugging Face layout [out, in].
struct HostTensor {
  std::vector<std::int64_t> shape;
  std::vector<float> data;

  bool empty() const { return data.empty(); }
  std::int64_t dim(std::size_t i) const { return shape.at(i); }
};

struct LayerWeights {
  HostTensor input_norm;              // [hidden]
  HostTensor q_proj, k_proj, v_proj;  // [heads*head_dim, hidden], [kv_heads*head_dim, hidden] x2
  HostTensor q_bias, k_bias, v_bias;  // [..] when attention_bias, else empty
  HostTensor q_norm, k_norm;          // [head_dim] when qk_norm, else empty
  HostTensor o_proj;                  // [hidden, heads*head_dim]
  HostTensor post_attention_norm;     // [hidden]
  HostTensor gate_proj, up_proj;      // [intermediate, hidden]
  HostTensor down_proj;               // [hidden, intermediate]
};

struct ModelWeights {
  HostTensor embed_tokens;  // [vocab, hidden]
  std::vector<LayerWeights> layers;
  HostTensor final_norm;  // [hidden]
  HostTensor lm_head;     // [vocab, hidden]; empty when tied (use embed_tokens)

  const HostTensor& output_embedding() const { return lm_head.empty() ? embed_tokens : lm_head; }
};

// Loads every tensor `expected_tensors(config)` names from the model directory, converted
// to fp32. Throws cachet::Error naming file and tensor: missing tensor, unexpected tensor,
// wrong shape, plus everything WeightStore::open reports.
ModelWeights load_weights(const std::filesystem::path& model_dir, const ModelConfig& config);

}  // namespace cachet::model
