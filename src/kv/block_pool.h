// The KV-cache blocks' bookkeeping: states, reference counts, content hashes and the LRU of
// cached blocks nobody references. Free of tensors: the backend owns the memory.
//
// A block is in exactly one state:
//   free    ref_count 0, no hash            on the free stack
//   in use  ref_count >= 1 (hash or not)    in one or more block tables
//   cached  ref_count 0, hash registered    in the LRU, reusable by a hit, evictable
#pragma once

#include <compare>
#include <cstdint>
#include <optional>
#include <span>
#include <unordered_map>
#include <vector>

#include "cachet/types.h"
#include "kv/block_hash.h"

namespace cachet::kv {

// Index of a block in the backend's KV pools.
struct BlockId {
  std::int32_t value = 0;
  friend auto operator<=>(BlockId, BlockId) = default;
};

class BlockPool {
 public:
  BlockPool(std::int64_t num_blocks, std::int32_t block_size);

  std::int64_t num_blocks() const { return static_cast<std::int64_t>(blocks_.size()); }
  std::int64_t num_free() const { return static_cast<std::int64_t>(free_.size()); }
  std::int64_t num_cached() const { return num_cached_; }
  std::int64_t num_in_use() const { return num_blocks() - num_free() - num_cached(); }
  // Blocks allocate() can hand out: free ones, then cached ones by eviction.
  std::int64_t num_allocatable() const { return num_free() + num_cached(); }
  std::int64_t num_evictions() const { return num_evictions_; }

  std::int32_t ref_count(BlockId id) const { return at(id).ref_count; }
  bool is_cached(BlockId id) const { return at(id).ref_count == 0 && at(id).hash.has_value(); }
  const std::optional<BlockHash>& hash(BlockId id) const { return at(id).hash; }

  // The registered block with this hash whose stored tokens equal `tokens` and whose
  // parent hash equals `parent` (nullopt for a first block): exact, so a hash collision
  // can never return a block with other contents. Does not change anything.
  std::optional<BlockId> lookup(const BlockHash& hash, const std::optional<BlockHash>& parent,
                                std::span<const TokenId> tokens) const;

  // `n` blocks with one reference each, taken from the free stack, then by evicting the
  // least recently used cached blocks; nullopt (and no change) when fewer than `n` are
  // allocatable.
  std::optional<std::vector<BlockId>> allocate(std::int64_t n);
  // One more reference to a block that is in use or cached (a prefix-cache hit).
  void ref(BlockId id);
  // Drops one reference of each block, walking the chain from its end: blocks left
  // unreferenced join the LRU's most-recent end when registered (deepest first, so a chain
  // is evicted from its tail) and the free stack otherwise.
  void release(std::span<const BlockId> chain);
  // Makes an in-use block findable by `hash`. Returns false (and changes nothing) when
  // another block already holds that hash: the same content computed twice.
  bool register_block(BlockId id, const BlockHash& hash, const std::optional<BlockHash>& parent,
                      std::span<const TokenId> tokens);

  // Debugging aid for poisoned K/V: while on, every block that joins the free stack (a
  // released unregistered block, an evicted one) is also recorded, for take_freed().
  void set_track_freed(bool on) { track_freed_ = on; }
  // The blocks freed since the last call (possibly already handed out again), oldest first.
  std::vector<BlockId> take_freed();

  // Aborts with a message unless: every block is in exactly one state, the free stack and
  // the LRU hold exactly the free and cached blocks, the hash index maps each registered
  // block's hash to it, and every ref count equals the number of times the block appears
  // in `tables` (the block tables of all live sequences).
  void check_integrity(std::span<const std::vector<BlockId>* const> tables) const;

 private:
  struct Block {
    std::int32_t ref_count = 0;
    std::optional<BlockHash> hash;    // registered content hash
    std::optional<BlockHash> parent;  // hash of the previous block in the chain
    std::int32_t lru_prev = -1;       // intrusive LRU links (block indices, -1: none)
    std::int32_t lru_next = -1;
  };

  const Block& at(BlockId id) const { return blocks_.at(static_cast<std::size_t>(id.value)); }
  Block& at(BlockId id) { return blocks_.at(static_cast<std::size_t>(id.value)); }
  void lru_push_back(BlockId id);
  void lru_remove(BlockId id);
  void evict(BlockId id);

  std::int32_t block_size_;
  std::vector<Block> blocks_;                   // [num_blocks]
  std::vector<TokenId> tokens_;                 // [num_blocks, block_size]: registered contents
  std::vector<BlockId> free_;                   // a stack
  std::int32_t lru_head_ = -1, lru_tail_ = -1;  // head: least recently used
  std::int64_t num_cached_ = 0;
  std::int64_t num_evictions_ = 0;
  std::unordered_map<BlockHash, BlockId, BlockHashHasher> index_;
  bool track_freed_ = false;
  std::vector<BlockId> freed_;
};

}  // namespace cachet::kv
