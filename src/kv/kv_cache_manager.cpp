#include "kv/kv_cache_manager.h"

#include <algorithm>

namespace cachet::kv {

KvCacheManager::KvCacheManager(std::int64_t num_blocks, std::int32_t block_size,
                               bool enable_caching)
    : block_size_(block_size), enable_caching_(enable_caching), pool_(num_blocks, block_size) {}

void KvCacheManager::update_hashes(SeqBlocks& seq, std::span<const TokenId> tokens) const {
  const std::size_t full = tokens.size() / static_cast<std::size_t>(block_size_);
  for (std::size_t i = seq.hashes.size(); i < full; ++i) {
    auto block = tokens.subspan(i * static_cast<std::size_t>(block_size_),
                                static_cast<std::size_t>(block_size_));
    seq.hashes.push_back(i == 0 ? hash_first_block(block, seq.salt)
                                : hash_next_block(seq.hashes[i - 1], block));
  }
}

PrefixMatch KvCacheManager::match(const SeqBlocks& seq, std::span<const TokenId> tokens,
                                  std::int32_t max_tokens) const {
  PrefixMatch m;
  if (!enable_caching_) return m;
  const std::size_t limit =
      std::min(seq.hashes.size(), static_cast<std::size_t>(std::max(0, max_tokens) / block_size_));
  for (std::size_t i = 0; i < limit; ++i) {
    auto block = tokens.subspan(i * static_cast<std::size_t>(block_size_),
                                static_cast<std::size_t>(block_size_));
    // Transitive: block i must have been computed after the very block matched at i - 1.
    const ChainLink link =
        i == 0 ? ChainLink::first(seq.salt) : ChainLink::after(pool_.ref_of(m.blocks.back()));
    auto id = pool_.lookup(seq.hashes[i], link, block);
    if (!id) break;
    m.blocks.push_back(*id);
  }
  m.num_tokens = static_cast<std::int32_t>(m.blocks.size()) * block_size_;
  return m;
}

std::int64_t KvCacheManager::blocks_for(std::int32_t tokens) const {
  return (static_cast<std::int64_t>(tokens) + block_size_ - 1) / block_size_;
}

std::int64_t KvCacheManager::blocks_needed(const SeqBlocks& seq, std::int32_t total_tokens) const {
  return std::max<std::int64_t>(
      0, blocks_for(total_tokens) - static_cast<std::int64_t>(seq.blocks.size()));
}

bool KvCacheManager::admit(SeqBlocks& seq, const PrefixMatch& match, std::int32_t total_tokens) {
  const std::int64_t fresh = std::max<std::int64_t>(
      0, blocks_for(total_tokens) - static_cast<std::int64_t>(match.blocks.size()));
  // Matched blocks that are cached (unreferenced) stop being evictable once we take them.
  const auto taken_from_lru = std::count_if(match.blocks.begin(), match.blocks.end(),
                                            [&](BlockId id) { return pool_.is_cached(id); });
  if (fresh > pool_.num_allocatable() - taken_from_lru) return false;
  for (BlockId id : match.blocks) pool_.ref(id);
  auto blocks = pool_.allocate(fresh);  // cannot fail: checked above
  seq.blocks = match.blocks;
  seq.blocks.insert(seq.blocks.end(), blocks->begin(), blocks->end());
  seq.num_registered = static_cast<std::int32_t>(match.blocks.size());
  return true;
}

bool KvCacheManager::grow(SeqBlocks& seq, std::int32_t total_tokens) {
  auto blocks = pool_.allocate(blocks_needed(seq, total_tokens));
  if (!blocks) return false;
  seq.blocks.insert(seq.blocks.end(), blocks->begin(), blocks->end());
  return true;
}

void KvCacheManager::commit(SeqBlocks& seq, std::span<const TokenId> tokens,
                            std::int32_t num_computed) {
  if (!enable_caching_) return;
  update_hashes(seq, tokens.first(static_cast<std::size_t>(num_computed)));
  const auto full = static_cast<std::int32_t>(
      std::min<std::size_t>(num_computed / block_size_, seq.blocks.size()));
  for (std::int32_t i = seq.num_registered; i < full; ++i) {
    const auto at = static_cast<std::size_t>(i);
    auto block = tokens.subspan(at * block_size_, static_cast<std::size_t>(block_size_));
    const ChainLink link =
        i == 0 ? ChainLink::first(seq.salt) : ChainLink::after(pool_.ref_of(seq.blocks[at - 1]));
    BlockId& own = seq.blocks[at];
    const BlockId held = pool_.register_block(own, seq.hashes[at], link, block);
    if (held != own) {
      // Another sequence computed the same content first: share its block, free this copy.
      pool_.ref(held);
      pool_.release(std::span<const BlockId>(&own, 1));
      own = held;
    }
  }
  seq.num_registered = std::max(seq.num_registered, full);
}

void KvCacheManager::free(SeqBlocks& seq) {
  pool_.release(seq.blocks);
  seq.blocks.clear();
  seq.num_registered = 0;
}

}  // namespace cachet::kv
