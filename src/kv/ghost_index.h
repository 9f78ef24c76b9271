// A bounded memory of blocks the prefix cache dropped: the hashes of recently evicted blocks
// and the tier that let each go (the device pool, with no host tier to keep it, or the host
// tier). It tells "this block was cached, but evicted" from "never cached" when a request's
// match stops (KvCacheManager::explain_miss). The least recently recorded hash is forgotten
// first; a block cached again keeps its record, which only counts once the block is gone
// again (a match consults it for the block after its cached prefix only).
//
// Memory: about 80 bytes per record (the 16-byte hash in a list node and a hash-map node);
// KvCacheManager keeps 2 x (device blocks + host slots) of them, at least 1024 and at most
// 65,536 (5 MiB).
#pragma once

#include <cstdint>
#include <list>
#include <optional>
#include <unordered_map>

#include "kv/block_hash.h"

namespace cachet::kv {

enum class CacheTier : std::uint8_t { kDevice, kHost };

class GhostIndex {
 public:
  explicit GhostIndex(std::size_t capacity) : capacity_(capacity) {}

  // `hash` left the cache from `tier` (its record moves to the back, the tier updated).
  void record(const BlockHash& hash, CacheTier tier);
  std::optional<CacheTier> find(const BlockHash& hash) const;
  std::size_t size() const { return order_.size(); }
  std::size_t capacity() const { return capacity_; }

 private:
  struct Record {
    BlockHash hash;
    CacheTier tier;
  };
  std::size_t capacity_;
  std::list<Record> order_;  // front: recorded longest ago
  std::unordered_map<BlockHash, std::list<Record>::iterator, BlockHashHasher> index_;
};

}  // namespace cachet::kv
