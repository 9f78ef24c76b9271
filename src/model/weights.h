// Model weights on the host in their stored dtype, checked against config.json.
#pragma once

#include <cstddef>
#include <cstdint>
#include <filesystem>
#include <memory>
#include <span>
#include <vector>

#include "model/dtype.h"
#include "model/model_config.h"
#include "model/safetensors.h"

namespace cachet::model {

// A dense tensor in its stored dtype (f32, f16 or bf16); matrices are row-major in Hugging
// Face layout [out, in]. Loaded tensors point into the memory-mapped safetensors file, which
// `owner` keeps mapped: nothing is copied or converted at load. Tensors built in memory
// (from_f32) own their values the same way.
struct HostTensor {
  std::vector<std::int64_t> shape;
  DType dtype = DType::kF32;
  std::span<const std::byte> bytes;   // numel() * dtype_size(dtype); no alignment guarantee
  std::shared_ptr<const void> owner;  // keeps `bytes` alive

  // A tensor owning `values`, stored as `dtype` (rounded to nearest even).
  static HostTensor from_f32(std::vector<std::int64_t> shape, std::vector<float> values,
                             DType dtype = DType::kF32);

  bool empty() const { return bytes.empty(); }
  std::int64_t dim(std::size_t i) const { return shape.at(i); }
  std::int64_t numel() const;
  // Whether the tensor has `shape` and holds that many values of its dtype.
  bool has_shape(const std::vector<std::int64_t>& expected) const;
  // The address of element `i` (of row `i` of a 2-D tensor when scaled by dim(1)).
  const std::byte* at(std::int64_t i) const {
    return bytes.data() + i * static_cast<std::int64_t>(dtype_size(dtype));
  }
  // Elements [first, first + count) as fp32 (exact: every stored dtype widens losslessly).
  void to_f32(std::int64_t first, std::int64_t count, float* out) const;
  // Every element as fp32.
  std::vector<float> to_f32() const;
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

// Loads every tensor `expected_tensors(config)` names from the model directory, as views of
// the memory-mapped files in their stored dtype (the mapping lives while any tensor does). Throws
// cachet::Error naming file and tensor: missing tensor, unexpected tensor, wrong shape, plus
// everything WeightStore::open reports.
ModelWeights load_weights(const std::filesystem::path& model_dir, const ModelConfig& config,
                          WeightLoading mode = WeightLoading::kMap);

}  // namespace cachet::model
