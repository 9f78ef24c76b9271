#include "kv/block_pool.h"

#include <algorithm>
#include <cstdio>
#include <cstdlib>
#include <utility>

namespace cachet::kv {
namespace {

[[noreturn]] void integrity_failure(const char* what, std::int64_t block) {
  std::fprintf(stderr, "cachet: KV block pool integrity violated: %s (block %lld)\n", what,
               static_cast<long long>(block));
  std::abort();
}

}  // namespace

BlockPool::BlockPool(std::int64_t num_blocks, std::int32_t block_size)
    : block_size_(block_size),
      blocks_(static_cast<std::size_t>(num_blocks)),
      tokens_(static_cast<std::size_t>(num_blocks) * static_cast<std::size_t>(block_size)) {
  free_.reserve(blocks_.size());
  // Pushed in reverse so block 0 is handed out first.
  for (std::int64_t i = num_blocks - 1; i >= 0; --i)
    free_.push_back(BlockId{static_cast<std::int32_t>(i)});
}

std::optional<BlockId> BlockPool::lookup(const BlockHash& hash,
                                         const std::optional<BlockHash>& parent,
                                         std::span<const TokenId> tokens) const {
  auto it = index_.find(hash);
  if (it == index_.end()) return std::nullopt;
  const Block& b = at(it->second);
  if (b.parent != parent || tokens.size() != static_cast<std::size_t>(block_size_))
    return std::nullopt;
  const TokenId* stored = tokens_.data() + static_cast<std::size_t>(it->second.value) * block_size_;
  if (!std::equal(tokens.begin(), tokens.end(), stored)) return std::nullopt;
  return it->second;
}

std::optional<std::vector<BlockId>> BlockPool::allocate(std::int64_t n) {
  if (n < 0 || n > num_allocatable()) return std::nullopt;
  std::vector<BlockId> out;
  out.reserve(static_cast<std::size_t>(n));
  while (static_cast<std::int64_t>(out.size()) < n) {
    if (free_.empty()) evict(BlockId{lru_head_});
    BlockId id = free_.back();
    free_.pop_back();
    at(id).ref_count = 1;
    out.push_back(id);
  }
  return out;
}

std::vector<BlockId> BlockPool::take_freed() { return std::exchange(freed_, {}); }

void BlockPool::ref(BlockId id) {
  Block& b = at(id);
  if (b.ref_count == 0) {
    if (!b.hash) integrity_failure("reference to a free block", id.value);
    lru_remove(id);
    --num_cached_;
  }
  ++b.ref_count;
}

void BlockPool::release(std::span<const BlockId> chain) {
  for (auto it = chain.rbegin(); it != chain.rend(); ++it) {
    Block& b = at(*it);
    if (b.ref_count <= 0) integrity_failure("release of an unreferenced block", it->value);
    if (--b.ref_count > 0) continue;
    if (b.hash) {
      lru_push_back(*it);
      ++num_cached_;
    } else {
      free_.push_back(*it);
      if (track_freed_) freed_.push_back(*it);
    }
  }
}

bool BlockPool::register_block(BlockId id, const BlockHash& hash,
                               const std::optional<BlockHash>& parent,
                               std::span<const TokenId> tokens) {
  Block& b = at(id);
  if (b.ref_count <= 0) integrity_failure("registering a block that is not in use", id.value);
  if (b.hash || tokens.size() != static_cast<std::size_t>(block_size_))
    integrity_failure("bad registration", id.value);
  if (!index_.emplace(hash, id).second) return false;
  b.hash = hash;
  b.parent = parent;
  std::copy(tokens.begin(), tokens.end(),
            tokens_.begin() + static_cast<std::ptrdiff_t>(id.value) * block_size_);
  return true;
}

void BlockPool::evict(BlockId id) {
  Block& b = at(id);
  lru_remove(id);
  --num_cached_;
  index_.erase(*b.hash);
  b.hash.reset();
  b.parent.reset();
  free_.push_back(id);
  if (track_freed_) freed_.push_back(id);
  ++num_evictions_;
}

void BlockPool::lru_push_back(BlockId id) {
  Block& b = at(id);
  b.lru_prev = lru_tail_;
  b.lru_next = -1;
  if (lru_tail_ >= 0)
    blocks_[static_cast<std::size_t>(lru_tail_)].lru_next = id.value;
  else
    lru_head_ = id.value;
  lru_tail_ = id.value;
}

void BlockPool::lru_remove(BlockId id) {
  Block& b = at(id);
  if (b.lru_prev >= 0)
    blocks_[static_cast<std::size_t>(b.lru_prev)].lru_next = b.lru_next;
  else
    lru_head_ = b.lru_next;
  if (b.lru_next >= 0)
    blocks_[static_cast<std::size_t>(b.lru_next)].lru_prev = b.lru_prev;
  else
    lru_tail_ = b.lru_prev;
  b.lru_prev = b.lru_next = -1;
}

void BlockPool::check_integrity(std::span<const std::vector<BlockId>* const> tables) const {
  const std::size_t n = blocks_.size();
  std::vector<std::int32_t> refs(n, 0);
  for (const auto* table : tables)
    for (BlockId id : *table) {
      if (id.value < 0 || static_cast<std::size_t>(id.value) >= n)
        integrity_failure("block table holds an out-of-range id", id.value);
      ++refs[static_cast<std::size_t>(id.value)];
    }
  enum class Seen : std::uint8_t { kNone, kFree, kLru };
  std::vector<Seen> seen(n, Seen::kNone);
  for (BlockId id : free_) {
    auto i = static_cast<std::size_t>(id.value);
    if (i >= n || seen[i] != Seen::kNone)
      integrity_failure("free stack holds a bad or repeated id", id.value);
    seen[i] = Seen::kFree;
  }
  std::int64_t lru_count = 0;
  for (std::int32_t i = lru_head_, prev = -1; i >= 0;
       prev = i, i = blocks_[static_cast<std::size_t>(i)].lru_next) {
    if (seen[static_cast<std::size_t>(i)] != Seen::kNone)
      integrity_failure("block both free and in the LRU, or an LRU cycle", i);
    if (blocks_[static_cast<std::size_t>(i)].lru_prev != prev)
      integrity_failure("broken LRU back link", i);
    seen[static_cast<std::size_t>(i)] = Seen::kLru;
    ++lru_count;
  }
  if (lru_count != num_cached_)
    integrity_failure("cached count differs from the LRU length", lru_count);
  std::size_t registered = 0;
  for (std::size_t i = 0; i < n; ++i) {
    const Block& b = blocks_[i];
    const auto id = static_cast<std::int64_t>(i);
    if (b.ref_count != refs[i])
      integrity_failure("ref count differs from block-table references", id);
    if (b.hash) {
      ++registered;
      auto it = index_.find(*b.hash);
      if (it == index_.end() || it->second.value != static_cast<std::int32_t>(i))
        integrity_failure("hash index out of sync", id);
    }
    const bool is_free = b.ref_count == 0 && !b.hash;
    const bool is_cached = b.ref_count == 0 && b.hash;
    if (is_free != (seen[i] == Seen::kFree))
      integrity_failure("free block not on the free stack (or the reverse)", id);
    if (is_cached != (seen[i] == Seen::kLru))
      integrity_failure("cached block not in the LRU (or the reverse)", id);
  }
  if (registered != index_.size())
    integrity_failure("hash index holds unregistered blocks",
                      static_cast<std::int64_t>(index_.size()));
}

}  // namespace cachet::kv
