// The pool of KV-cache blocks: which blocks are free and how many block tables reference
// each one. Free of tensors: the backend owns the memory, this owns the bookkeeping.
#pragma once

#include <compare>
#include <cstdint>
#include <optional>
#include <span>
#include <vector>

namespace cachet::kv {

// Index of a block in the backend's KV pools.
struct BlockId {
  std::int32_t value = 0;
  friend auto operator<=>(BlockId, BlockId) = default;
};

class BlockPool {
 public:
  explicit BlockPool(std::int64_t num_blocks);

  std::int64_t num_blocks() const { return static_cast<std::int64_t>(ref_counts_.size()); }
  std::int64_t num_free() const { return static_cast<std::int64_t>(free_.size()); }
  std::int64_t num_in_use() const { return num_blocks() - num_free(); }

  // `n` fresh blocks, each with one reference, or nullopt (and no change) when fewer than
  // `n` are free.
  std::optional<std::vector<BlockId>> allocate(std::int64_t n);
  // Drops one reference of each block; a block with none left is free again.
  void release(std::span<const BlockId> blocks);

  std::int32_t ref_count(BlockId id) const { return ref_counts_.at(static_cast<std::size_t>(id.value)); }

  // Aborts with a message when the bookkeeping is inconsistent: every block is free
  // exactly when its ref count is 0, and the free list holds no duplicates.
  void check_integrity() const;

 private:
  std::vector<std::int32_t> ref_counts_;  // [num_blocks]
  std::vector<BlockId> free_;             // a stack: the most recently freed block is reused first
};

}  // namespace cachet::kv
