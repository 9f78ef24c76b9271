// The CUDA backend's host-memory tier of the KV cache: pinned host slots, one KV block each,
// and the copies between them and the device pools.
#pragma once

#include <cuda_runtime_api.h>

#include <cstddef>
#include <cstdint>
#include <span>

#include "backend/backend.h"
#include "backend/cuda/cuda_util.h"
#include "backend/cuda/kv_block_copy.h"

namespace cachet::backend::cuda {

class HostKvTier {
 public:
  HostKvTier() = default;
  // Pinned memory for `num_slots` blocks of `pools`' geometry; throws kOutOfMemory.
  HostKvTier(std::int64_t num_slots, const KvPools& pools);

  // Queues each copy on `stream` as one strided copy of the block's num_pools tiles, so they
  // run in order with the forward passes queued there. Throws kInvalidArgument for a block or
  // slot out of range (before queueing anything).
  void copy(std::span<const HostCopy> copies, bool to_host, cudaStream_t stream) const;
  // The pinned bytes of one slot; throws kInvalidArgument for a slot out of range.
  std::span<std::byte> slot(std::int64_t slot);

 private:
  KvPools pools_;
  std::int64_t num_slots_ = 0;
  PinnedBuffer host_;  // [slots][num_pools][tile_bytes]
};

}  // namespace cachet::backend::cuda
