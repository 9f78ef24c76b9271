// The KV cache as a cache: per-sequence block tables over the BlockPool, prefix matching by
// content hash, and registration of every full block once its K/V is written.
//
// One sequence's blocks, in token order:
//   [0, num_registered)            full, registered: findable by other requests
//   [num_registered, blocks.size)  being filled (or full but not yet committed)
// A committed block whose content another block already holds in the cache (the same
// prefix computed twice at once) is replaced in the table by that block and freed, so the
// table's registered part is always registered blocks, each computed after the one before.
#pragma once

#include <cstdint>
#include <span>
#include <string>
#include <vector>

#include "kv/block_hash.h"
#include "kv/block_pool.h"

namespace cachet::kv {

// What a sequence holds in the KV cache.
struct SeqBlocks {
  std::string salt;               // cache_salt: only sequences with the same salt share blocks
  std::vector<BlockId> blocks;    // block table: token i lives in blocks[i / block_size]
  std::vector<BlockHash> hashes;  // hashes of the sequence's full blocks computed so far
  std::int32_t num_registered = 0;
};

// The longest cached prefix of a sequence, found without changing anything.
struct PrefixMatch {
  std::vector<BlockId> blocks;  // cached blocks, in chain order
  std::int32_t num_tokens = 0;  // blocks.size() * block_size
};

class KvCacheManager {
 public:
  KvCacheManager(std::int64_t num_blocks, std::int32_t block_size, bool enable_caching);

  std::int32_t block_size() const { return block_size_; }
  bool caching_enabled() const { return enable_caching_; }
  const BlockPool& pool() const { return pool_; }
  BlockPool& pool() { return pool_; }

  // Extends seq.hashes to cover every full block of `tokens` (the sequence's tokens).
  void update_hashes(SeqBlocks& seq, std::span<const TokenId> tokens) const;
  // Longest run of leading full blocks found in the cache, at most `max_tokens` tokens.
  // Needs update_hashes first. Empty when caching is off.
  PrefixMatch match(const SeqBlocks& seq, std::span<const TokenId> tokens,
                    std::int32_t max_tokens) const;
  // For a sequence that holds no blocks: takes the matched blocks and allocates fresh ones
  // so the table covers `total_tokens`. False, with nothing changed, when too few blocks
  // are free or evictable.
  bool admit(SeqBlocks& seq, const PrefixMatch& match, std::int32_t total_tokens);
  // Grows the table of a sequence to cover `total_tokens`; false and no change if it can't.
  bool grow(SeqBlocks& seq, std::int32_t total_tokens);
  // Registers the blocks that `num_computed` tokens have filled; call after the step that
  // wrote them, so other requests see only K/V that exists. A block whose content is already
  // registered (an identical block, computed at the same time) is swapped for that block.
  void commit(SeqBlocks& seq, std::span<const TokenId> tokens, std::int32_t num_computed);
  // Releases the sequence's blocks: registered ones stay cached, the rest are freed.
  void free(SeqBlocks& seq);

  // How many blocks a table covering `total_tokens` needs beyond what `seq` holds.
  std::int64_t blocks_needed(const SeqBlocks& seq, std::int32_t total_tokens) const;
  void check_integrity(std::span<const std::vector<BlockId>* const> tables) const {
    pool_.check_integrity(tables);
  }

 private:
  std::int64_t blocks_for(std::int32_t tokens) const;  // ceil(tokens / block_size)

  std::int32_t block_size_;
  bool enable_caching_;
  BlockPool pool_;
};

}  // namespace cachet::kv
