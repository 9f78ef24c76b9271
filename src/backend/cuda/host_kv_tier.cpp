#include "backend/cuda/host_kv_tier.h"

#include <fmt/format.h>

namespace cachet::backend::cuda {

HostKvTier::HostKvTier(std::int64_t num_slots, const KvPools& pools)
    : pools_(pools),
      num_slots_(num_slots),
      host_(static_cast<std::size_t>(num_slots) * pools.num_pools * pools.tile_bytes,
            fmt::format("the KV cache's host tier ({} blocks)", num_slots)) {}

void HostKvTier::copy(std::span<const HostCopy> copies, bool to_host, cudaStream_t stream) const {
  for (const HostCopy& c : copies) {
    if (c.block < 0 || c.block >= pools_.num_blocks || c.slot < 0 || c.slot >= num_slots_)
      throw Error(ErrorCode::kInvalidArgument,
                  fmt::format("host tier copy: block {} or slot {} out of range", c.block, c.slot));
  }
  const std::size_t tile = pools_.tile_bytes;
  const auto rows = static_cast<std::size_t>(pools_.num_pools);
  for (const HostCopy& c : copies) {
    char* device = pools_.base + static_cast<std::size_t>(c.block) * tile;
    char* host = host_.as<char>() + static_cast<std::size_t>(c.slot) * rows * tile;
    if (to_host)
      check(cudaMemcpy2DAsync(host, tile, device, pools_.pool_bytes, tile, rows,
                              cudaMemcpyDeviceToHost, stream),
            "copy a KV block to the host tier");
    else
      check(cudaMemcpy2DAsync(device, pools_.pool_bytes, host, tile, tile, rows,
                              cudaMemcpyHostToDevice, stream),
            "copy a KV block from the host tier");
  }
}

std::span<std::byte> HostKvTier::slot(std::int64_t slot) {
  if (slot < 0 || slot >= num_slots_)
    throw Error(ErrorCode::kInvalidArgument, fmt::format("host tier slot {} out of range", slot));
  const std::size_t bytes = static_cast<std::size_t>(pools_.num_pools) * pools_.tile_bytes;
  return {host_.as<std::byte>() + static_cast<std::size_t>(slot) * bytes, bytes};
}

}  // namespace cachet::backend::cuda
