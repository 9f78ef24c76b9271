#include "kv/block_pool.h"

#include <cstdio>
#include <cstdlib>

namespace cachet::kv {
namespace {

[[noreturn]] void integrity_failure(const char* what, std::int64_t block) {
  std::fprintf(stderr, "cachet: KV block pool integrity violated: %s (block %lld)\n", what,
               static_cast<long long>(block));
  std::abort();
}

}  // namespace

BlockPool::BlockPool(std::int64_t num_blocks) : ref_counts_(static_cast<std::size_t>(num_blocks), 0) {
  free_.reserve(ref_counts_.size());
  // Pushed in reverse so block 0 is handed out first.
  for (std::int64_t i = num_blocks - 1; i >= 0; --i) free_.push_back(BlockId{static_cast<std::int32_t>(i)});
}

std::optional<std::vector<BlockId>> BlockPool::allocate(std::int64_t n) {
  if (n < 0 || n > num_free()) return std::nullopt;
  std::vector<BlockId> blocks(free_.end() - n, free_.end());
  free_.resize(free_.size() - static_cast<std::size_t>(n));
  for (BlockId id : blocks) ref_counts_[static_cast<std::size_t>(id.value)] = 1;
  return blocks;
}

void BlockPool::release(std::span<const BlockId> blocks) {
  for (BlockId id : blocks) {
    auto& count = ref_counts_.at(static_cast<std::size_t>(id.value));
    if (count <= 0) integrity_failure("release of an unreferenced block", id.value);
    if (--count == 0) free_.push_back(id);
  }
}

void BlockPool::check_integrity() const {
  std::vector<bool> seen(ref_counts_.size(), false);
  for (BlockId id : free_) {
    auto i = static_cast<std::size_t>(id.value);
    if (i >= ref_counts_.size()) integrity_failure("free list holds an out-of-range id", id.value);
    if (seen[i]) integrity_failure("block twice in the free list", id.value);
    if (ref_counts_[i] != 0) integrity_failure("free block with references", id.value);
    seen[i] = true;
  }
  for (std::size_t i = 0; i < ref_counts_.size(); ++i) {
    if (!seen[i] && ref_counts_[i] <= 0) integrity_failure("unreferenced block missing from the free list", static_cast<std::int64_t>(i));
  }
}

}  // namespace cachet::kv
