// The host-memory tier of the prefix cache: bookkeeping of the blocks a backend keeps in host
// memory after the device pool evicted them (EngineConfig::host_kv_cache_bytes). Free of
// tensors: the backend owns the memory, slot s being its host block s.
//
// An entry is a copy of registered contents: their hash, tokens, link (the parent's ContentId,
// or a first block's salt) and ContentId, so a hit here is as exact as one in the device pool
// and a block loaded back keeps its identity (its children, in either tier, still link to
// it). Entries are evicted least recently used first, pinned ones (a prefix pin's blocks
// demoted while their pin runs, at most set_pin_budget() of them) only when no unpinned
// entry is left, as in the device pool; an entry is held (not evictable) from
// the moment a request takes it until the copy back to the device has run, and while the
// disk tier writes its bytes.
//
// With a disk tier, a slot may also be reserved: taken for bytes the disk tier is reading
// into it, neither free nor findable, until publish() makes it an entry or cancel() frees it.
#pragma once

#include <cstdint>
#include <functional>
#include <optional>
#include <set>
#include <span>
#include <string>
#include <unordered_map>
#include <utility>
#include <vector>

#include "cachet/types.h"
#include "kv/block_hash.h"
#include "kv/block_pool.h"

namespace cachet::kv {

class HostTier {
 public:
  // `num_slots` may be 0: the tier is then off and stores nothing.
  HostTier(std::int64_t num_slots, std::int32_t block_size);

  std::int64_t num_slots() const { return static_cast<std::int64_t>(slots_.size()); }
  // Slots holding an entry (not free, not reserved).
  std::int64_t num_used() const {
    return num_slots() - static_cast<std::int64_t>(free_.size()) - num_reserved_;
  }
  std::int64_t num_reserved() const { return num_reserved_; }
  std::int64_t num_evictions() const { return num_evictions_; }
  // Called with the hash of each entry the tier evicts (to make room), before it goes.
  void set_on_evict(std::function<void(const BlockHash&)> on_evict) {
    on_evict_ = std::move(on_evict);
  }

  // The entry holding these contents (same hash, link and tokens), exact whatever the hash.
  std::optional<std::int64_t> lookup(const BlockHash& hash, const ChainLink& link,
                                     std::span<const TokenId> tokens) const;
  ContentId content(std::int64_t slot) const { return at(slot).content; }
  const BlockHash& hash(std::int64_t slot) const { return at(slot).hash; }
  std::span<const TokenId> tokens(std::int64_t slot) const;

  // Takes a copy of `block`: the slot its bytes are to be copied into, or nullopt when there
  // is nothing to copy: the tier already holds these contents (the entry becomes the most
  // recently used), or every slot is held (the block is then dropped). A pinned block's pin
  // goes with it (to the entry already there too) while the pin budget allows.
  std::optional<std::int64_t> store(const EvictedBlock& block);

  // Prefix pins kept by demoted blocks: at most `entries` pinned entries at once.
  void set_pin_budget(std::int64_t entries) { pin_budget_ = entries; }
  std::int64_t num_pinned() const { return static_cast<std::int64_t>(pin_ends_.size()); }
  // Unpins every entry whose pin ends at or before `now`; it goes to the least recently used
  // end (it went unused for its whole TTL).
  void expire_pins(double now);
  // An entry's pin: until when (0: none) and its TTL.
  std::pair<double, double> pin(std::int64_t slot) const {
    return {at(slot).pin_until, at(slot).pin_ttl};
  }
  // Marks an entry most recently used (a hit).
  void touch(std::int64_t slot);
  // A request takes the entry: it is not evicted until release_hold().
  void hold(std::int64_t slot);
  void release_hold(std::int64_t slot);

  // A slot for a block the disk tier is about to read: taken as store() takes one (evicting
  // the least recently used unheld entry when none is free), but not an entry yet; nullopt
  // when every slot is held or reserved.
  std::optional<std::int64_t> reserve();
  // The reserved slot becomes the entry of these contents (most recently used), marked as
  // read from disk until clear_from_disk(); or, when the tier holds these contents already
  // (same hash, link and tokens), the slot is freed and that entry returned.
  std::int64_t publish(std::int64_t slot, const BlockHash& hash, const ChainLink& link,
                       std::span<const TokenId> tokens, ContentId content);
  // The reserved slot is freed (its read failed).
  void cancel(std::int64_t slot);
  bool from_disk(std::int64_t slot) const { return at(slot).from_disk; }
  void clear_from_disk(std::int64_t slot) { at(slot).from_disk = false; }

  // Throws Error(kInternal) naming the broken rule unless every slot is free, reserved or used
  // exactly once, the LRU holds exactly the used unheld entries, and the hash and content
  // indexes hold exactly the used entries.
  void check_integrity() const;

 private:
  struct Entry {
    bool used = false;
    bool reserved = false;   // being read from disk: neither free nor an entry
    bool from_disk = false;  // read from disk and not yet loaded to the device
    std::int32_t holds = 0;
    BlockHash hash;
    ContentId content;
    std::optional<ContentId> parent;  // nullopt: a first block, computed after `salt`
    std::string salt;
    double pin_until = 0, pin_ttl = 0;  // pin_until > 0: pinned, then in lru_[1] when unheld
    std::int64_t lru_prev = -1, lru_next = -1;
  };

  const Entry& at(std::int64_t slot) const;
  Entry& at(std::int64_t slot);
  bool same_content(std::int64_t slot, const ChainLink& link,
                    std::span<const TokenId> tokens) const;
  std::optional<std::int64_t> take_slot();
  void drop(std::int64_t slot);
  // Makes a taken slot the entry of these contents, most recently used.
  void fill(std::int64_t slot, const BlockHash& hash, const ChainLink& link,
            std::span<const TokenId> tokens, ContentId content);
  void lru_push_back(std::int64_t slot);
  void lru_remove(std::int64_t slot);
  // A pin until `until` (0: none), which moves an unheld entry between the LRUs.
  void set_pin(std::int64_t slot, double until, double ttl);
  void carry_pin(std::int64_t slot, const EvictedBlock& block);
  void check_lru(int list, std::vector<bool>& in_lru) const;

  std::int32_t block_size_;
  std::vector<Entry> slots_;
  std::vector<TokenId> tokens_;  // [num_slots, block_size]
  std::vector<std::int64_t> free_;
  // [0]: unpinned unheld entries, [1]: pinned ones; head: least recently used.
  std::int64_t lru_head_[2] = {-1, -1}, lru_tail_[2] = {-1, -1};
  std::set<std::pair<double, std::int64_t>> pin_ends_;  // (pin_until, slot) of pinned entries
  std::int64_t pin_budget_ = 0;
  std::unordered_multimap<BlockHash, std::int64_t, BlockHashHasher> index_;
  std::unordered_map<std::uint64_t, std::int64_t> by_content_;
  std::int64_t num_evictions_ = 0;
  std::int64_t num_reserved_ = 0;
  std::function<void(const BlockHash&)> on_evict_;
};

}  // namespace cachet::kv
