// The KV-cache blocks' bookkeeping: states, reference counts, content identities and the LRU
// of cached blocks nobody references. Free of tensors: the backend owns the memory.
//
// A block is in exactly one state:
//   free    ref_count 0, not registered            on the free stack
//   in use  ref_count >= 1 (registered or not)     in one or more block tables
//   cached  ref_count 0, registered                in an LRU, reusable by a hit, evictable
//
// A registered block may also be pinned until a time (a prefix pin with a TTL): cached
// pinned blocks wait in an LRU of their own, evicted only when no unpinned cached block is
// left, and join the ordinary LRU at its least recently used end once their pin ends
// (expire_pins) or is dropped (unpin).
//
// A registered block is found by its content hash, but a hash only narrows the search: a
// hit also needs the block's own tokens and what its K/V was computed after (its link: the
// very block before it in the chain, or for a first block the cache salt itself) to be
// equal. So a hash collision, accidental or constructed, can cost a comparison but never
// serve K/V computed from other tokens.
#pragma once

#include <compare>
#include <cstdint>
#include <functional>
#include <optional>
#include <set>
#include <span>
#include <string>
#include <string_view>
#include <unordered_map>
#include <utility>
#include <variant>
#include <vector>

#include "cachet/types.h"
#include "kv/block_hash.h"

namespace cachet::kv {

// Index of a block in the backend's KV pools.
struct BlockId {
  std::int32_t value = 0;
  friend auto operator<=>(BlockId, BlockId) = default;
};

// The identity of a registered block's contents as a chain link: assigned when the contents
// are first registered (never 0, never reused), and kept when they move between tiers (the
// device pool, the host tier) so that a child's link to its parent holds wherever either is.
// Once contents are dropped from every tier their id is gone, so a link to them never matches
// whatever a block holds next.
struct ContentId {
  std::uint64_t value = 0;
  friend auto operator<=>(ContentId, ContentId) = default;
};

// What a block's K/V was computed after: the block before it in its chain, or, for the first
// block of a sequence, nothing but the request's cache salt.
struct ChainLink {
  std::optional<ContentId> parent;  // nullopt: a first block
  std::string_view salt;            // a first block's cache salt (ignored when parent is set)

  static ChainLink first(std::string_view salt) { return {std::nullopt, salt}; }
  static ChainLink after(ContentId parent) { return {parent, {}}; }
};

// A registered block as eviction ends its registration: what a lower tier needs to keep it.
// Valid during the call only.
struct EvictedBlock {
  BlockId id;
  BlockHash hash;
  ContentId content;
  ChainLink link;
  std::span<const TokenId> tokens;
  double pin_until = 0;  // > 0: pinned until then (BlockPool::pin), by pin_ttl a hit
  double pin_ttl = 0;
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
  std::int64_t num_pinned() const { return static_cast<std::int64_t>(pin_ends_.size()); }

  std::int32_t ref_count(BlockId id) const { return at(id).ref_count; }
  bool is_cached(BlockId id) const { return at(id).ref_count == 0 && at(id).hash.has_value(); }
  const std::optional<BlockHash>& hash(BlockId id) const { return at(id).hash; }
  // The contents of a registered block, as a link for the block after it (ContentId{} for an
  // unregistered one, which no block links to).
  ContentId content_of(BlockId id) const { return at(id).content; }

  // The registered block with this hash, these tokens and this link: exact, whatever the
  // hash. Does not change anything.
  std::optional<BlockId> lookup(const BlockHash& hash, const ChainLink& link,
                                std::span<const TokenId> tokens) const;

  // The registered block computed after `link` whose tokens begin with the longest run of
  // `tokens`' leading tokens, and that run's length (0 < length <= tokens.size()); nullopt
  // when no such block shares even the first token. The K/V of those leading positions is
  // what the request would compute for them (partial-block reuse).
  struct PartialHit {
    BlockId id;
    std::int32_t num_tokens = 0;
  };
  std::optional<PartialHit> longest_partial(const ChainLink& link,
                                            std::span<const TokenId> tokens) const;

  // What the pool holds where a chain's match stopped before `tokens` (a whole block): how
  // many registered blocks continue `link` (with other tokens, or the match would not have
  // stopped), the longest run of `tokens`' leading tokens one of them begins with, and for a
  // first block whether a first block with exactly these tokens is registered under another
  // salt. For KvCacheManager::explain_miss; costs what longest_partial does.
  struct NextBlocks {
    std::int64_t num_continuations = 0;
    std::int32_t longest_run = 0;
    bool under_other_salt = false;
  };
  NextBlocks next_blocks(const ChainLink& link, std::span<const TokenId> tokens) const;

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
  // Makes an in-use block findable by its content: `hash`, `link` and `tokens`. Returns the
  // block that holds this content in the cache now: `id`, or an identical block (same hash,
  // tokens and link) registered before it, in which case `id` stays unregistered. `content`:
  // the identity these contents already have in another tier (a block loaded from the host
  // tier, or computed again while the host tier holds it); ContentId{}: a new one.
  BlockId register_block(BlockId id, const BlockHash& hash, const ChainLink& link,
                         std::span<const TokenId> tokens, ContentId content = {});
  // A content identity never handed out before, for contents first registered in another
  // tier (a block read from the disk tier into the host tier).
  ContentId new_content() { return ContentId{next_content_++}; }
  // Pins a registered block until `until` (seconds on the caller's steady clock; a later pin
  // already there stands) and records `ttl`, by which pin_refresh() extends it.
  void pin(BlockId id, double until, double ttl);
  bool is_pinned(BlockId id) const { return at(id).pin_until > 0; }
  // A pinned block's pin, extended to `now` + its TTL (a hit); nothing for an unpinned one.
  void pin_refresh(BlockId id, double now);
  void unpin(BlockId id);
  // Unpins every block whose pin ends at or before `now`.
  void expire_pins(double now);

  // Called with each block eviction is about to drop, before anything is changed (the
  // host tier keeps it). The callback must not call back into the pool.
  void set_on_evict(std::function<void(const EvictedBlock&)> on_evict) {
    on_evict_ = std::move(on_evict);
  }

  // Debugging aid for poisoned K/V: while on, every block that joins the free stack (a
  // released unregistered block, an evicted one) is also recorded, for take_freed().
  void set_track_freed(bool on) { track_freed_ = on; }
  // The blocks freed since the last call (possibly already handed out again), oldest first.
  std::vector<BlockId> take_freed();

  // Throws Error(kInternal) naming the broken rule and a block unless: every block is in
  // exactly one state, the free stack and the LRU hold exactly the free and cached blocks,
  // the hash index holds exactly the registered blocks under their hashes, every salt is
  // counted by the first blocks that use it, and every ref count equals the number of times
  // the block appears in `tables` (the block tables of all live sequences).
  void check_integrity(std::span<const std::vector<BlockId>* const> tables) const;

 private:
  // A registered first block's cache salt: the interned string (its key in salts_, whose
  // address is stable while any registered first block uses it), compared exactly.
  struct SaltId {
    const std::string* name;  // value-initialized (null) in a default Block
    friend bool operator==(SaltId, SaltId) = default;
  };
  struct Block {
    std::int32_t ref_count = 0;
    ContentId content;                      // while registered
    std::optional<BlockHash> hash;          // set while registered
    std::variant<SaltId, ContentId> after;  // what its K/V follows, while registered
    std::int32_t lru_prev = -1;             // intrusive LRU links (block indices, -1: none)
    std::int32_t lru_next = -1;
    double pin_until = 0;  // > 0 while pinned: then in lru_[1] when cached
    double pin_ttl = 0;
  };
  struct SaltHasher {
    using is_transparent = void;
    std::size_t operator()(std::string_view s) const noexcept {
      return std::hash<std::string_view>{}(s);
    }
  };

  const Block& at(BlockId id) const;
  Block& at(BlockId id) { return const_cast<Block&>(std::as_const(*this).at(id)); }
  bool same_content(BlockId id, const ChainLink& link, std::span<const TokenId> tokens) const;
  bool same_link(const Block& b, const ChainLink& link) const;
  // How many of `tokens`' leading tokens (at most a block's) block `id` begins with.
  std::int32_t leading_run(BlockId id, std::span<const TokenId> tokens) const;
  static std::uint64_t children_key(const Block& b);
  std::optional<SaltId> find_salt(std::string_view salt) const;
  SaltId use_salt(std::string_view salt);
  void unuse_salt(SaltId id);
  void lru_push_back(BlockId id);
  void lru_remove(BlockId id);
  void set_pin(BlockId id, double until);  // 0: unpin; moves a cached block between LRUs
  void evict(BlockId id);
  void check_index() const;

  std::int32_t block_size_;
  std::vector<Block> blocks_;    // [num_blocks]
  std::vector<TokenId> tokens_;  // [num_blocks, block_size]: registered contents
  std::vector<BlockId> free_;    // a stack
  // [0]: unpinned cached blocks, [1]: pinned ones; head: least recently used.
  std::int32_t lru_head_[2] = {-1, -1}, lru_tail_[2] = {-1, -1};
  std::set<std::pair<double, std::int32_t>> pin_ends_;  // (pin_until, block) of pinned blocks
  std::int64_t num_cached_ = 0;
  std::int64_t num_evictions_ = 0;
  // Several blocks may share a hash (a collision): each is told apart by its content.
  std::unordered_multimap<BlockHash, BlockId, BlockHashHasher> index_;
  // Registered blocks by what they follow: the parent's ContentId, or 0 for first blocks
  // (whose salts longest_partial compares).
  std::unordered_multimap<std::uint64_t, BlockId> children_;
  // Salt -> how many registered first blocks use it.
  std::unordered_map<std::string, std::int64_t, SaltHasher, std::equal_to<>> salts_;
  bool track_freed_ = false;
  std::vector<BlockId> freed_;
  std::uint64_t next_content_ = 1;
  std::function<void(const EvictedBlock&)> on_evict_;
};

}  // namespace cachet::kv
