// Copies inside the CUDA backend's KV cache: the K/V of a block's first positions into another
// block (partial-block reuse).
#pragma once

#include <cuda_runtime_api.h>

#include <cstddef>
#include <cstdint>
#include <span>

#include "backend/backend.h"

namespace cachet::backend::cuda {

// The KV cache as the copies see it: `num_pools` pools (every layer's K and V), each
// `pool_bytes` after the one before from `base`, block b's tile at b * tile_bytes in each; a
// tile is [num_kv_heads][block_size][head_dim] elements of `element_bytes`.
struct KvPools {
  char* base = nullptr;
  std::size_t pool_bytes = 0;
  std::size_t tile_bytes = 0;
  std::int32_t num_pools = 0;
  std::int64_t num_blocks = 0;
  std::int32_t num_kv_heads = 0;
  std::int32_t block_size = 0;
  std::size_t row_bytes = 0;  // head_dim x element size: one position of one head
};

// Queues each copy on `stream`, one strided copy per pool (num_kv_heads rows of num_tokens
// positions). Throws kInvalidArgument for a block or token count out of range, before
// queueing anything.
void copy_block_prefixes(const KvPools& pools, std::span<const BlockPrefixCopy> copies,
                         cudaStream_t stream);

}  // namespace cachet::backend::cuda
