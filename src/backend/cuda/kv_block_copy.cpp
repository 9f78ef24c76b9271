#include "backend/cuda/kv_block_copy.h"

#include <fmt/format.h>

#include "backend/cuda/cuda_util.h"
#include "cachet/errors.h"

namespace cachet::backend::cuda {

void copy_block_prefixes(const KvPools& pools, std::span<const BlockPrefixCopy> copies,
                         cudaStream_t stream) {
  for (const BlockPrefixCopy& c : copies) {
    if (c.from < 0 || c.from >= pools.num_blocks || c.to < 0 || c.to >= pools.num_blocks ||
        c.num_tokens < 0 || c.num_tokens > pools.block_size)
      throw Error(ErrorCode::kInvalidArgument,
                  fmt::format("block prefix copy: block {} -> {} of {} tokens out of range", c.from,
                              c.to, c.num_tokens));
  }
  const std::size_t head_pitch = static_cast<std::size_t>(pools.block_size) * pools.row_bytes;
  for (const BlockPrefixCopy& c : copies) {
    if (c.num_tokens == 0) continue;
    for (std::int32_t p = 0; p < pools.num_pools; ++p) {
      char* pool = pools.base + static_cast<std::size_t>(p) * pools.pool_bytes;
      check(cudaMemcpy2DAsync(pool + static_cast<std::size_t>(c.to) * pools.tile_bytes, head_pitch,
                              pool + static_cast<std::size_t>(c.from) * pools.tile_bytes,
                              head_pitch, static_cast<std::size_t>(c.num_tokens) * pools.row_bytes,
                              static_cast<std::size_t>(pools.num_kv_heads),
                              cudaMemcpyDeviceToDevice, stream),
            "copy the K/V of a block's first positions");
    }
  }
}

}  // namespace cachet::backend::cuda
