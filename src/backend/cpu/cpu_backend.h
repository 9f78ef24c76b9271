// The CPU reference backend: fp32, multi-threaded, the paged KV layout of backend.h.
#pragma once

#include <memory>
#include <span>

#include "backend/backend.h"
#include "model/model_config.h"
#include "model/weights.h"

namespace cachet::backend {

// Bytes one KV block takes across all layers (K and V) with fp32 elements.
std::int64_t cpu_kv_block_bytes(const model::ModelConfig& config, std::int32_t block_size);

// Takes ownership of the weights; allocates the KV pools of `kv` (num_layers, num_kv_heads
// and head_dim must match the config). `num_threads` >= 1.
std::unique_ptr<Backend> make_cpu_backend(const model::ModelConfig& config,
                                          model::ModelWeights weights, const KvCacheSpec& kv,
                                          int num_threads);

// For tests and debugging: the K (`value` false) or V (`value` true) pool of `layer` of a
// backend made by make_cpu_backend, [num_blocks, num_kv_heads, block_size, head_dim].
// The view lives as long as the backend; forward() updates its contents. Throws cachet::Error
// (kInvalidArgument) for another kind of backend or a layer out of range.
std::span<const float> cpu_kv_pool(const Backend& backend, std::int32_t layer, bool value);

}  // namespace cachet::backend
