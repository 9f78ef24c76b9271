// The KV cache as a cache: per-sequence block tables over the BlockPool, prefix matching by
// content hash, and registration of every full block once its K/V is written.
//
// One sequence's blocks, in token order:
//   [0, num_registered)            full, registered: findable by other requests
//   [num_registered, blocks.size)  being filled (or full but not yet committed)
// A committed block whose content another block already holds in the cache (the same
// prefix computed twice at once) is replaced in the table by that block and freed, so the
// table's registered part is always registered blocks, each computed after the one before.
//
// With a host tier (host_slots > 0), a block the device pool evicts is demoted: the tier
// takes a copy, and a later match continues from the device pool into the tier as one
// longest-prefix match. Admission loads matched host blocks into fresh device blocks,
// registered at once under their old identity. The copies themselves are the backend's:
// take_transfers() hands them over, to run before the next forward pass (saves first).
//
// With partial-block reuse, a match that ends inside a block goes on token by token: when a
// cached device block computed after the matched prefix begins with the request's next
// tokens, their K/V is copied into the request's fresh block and only the rest is computed.
//
// With a disk tier (set_disk_tier) below the host tier, every block computed on the device is
// written through: saved to a host slot, held there until the disk tier has written it. A
// waiting sequence whose match stops where the disk tier has the next blocks has them read
// into reserved host slots first (start_disk_read) and waits; finish_disk_jobs() publishes
// what was read and verified as host entries, which its admission then loads like any other.
#pragma once

#include <cstdint>
#include <map>
#include <optional>
#include <span>
#include <string>
#include <vector>

#include "cachet/types.h"
#include "kv/block_hash.h"
#include "kv/block_pool.h"
#include "kv/disk_tier.h"
#include "kv/ghost_index.h"
#include "kv/host_tier.h"

namespace cachet::kv {

// What a sequence holds in the KV cache.
struct SeqBlocks {
  std::string salt;               // cache_salt: only sequences with the same salt share blocks
  std::vector<BlockId> blocks;    // block table: token i lives in blocks[i / block_size]
  std::vector<BlockHash> hashes;  // hashes of the sequence's full blocks computed so far
  std::int32_t num_registered = 0;
  // The disk tier: looked in once per sequence; the read it waits for, while one runs.
  bool disk_probed = false;
  std::optional<std::uint64_t> disk_read;
};

// The longest cached prefix of a sequence, found without changing anything: device blocks
// first, then the host tier's entries that continue the chain.
struct PrefixMatch {
  std::vector<BlockId> blocks;           // cached device blocks, in chain order
  std::vector<std::int64_t> host_slots;  // then host-tier entries, in chain order
  std::size_t num_from_disk = 0;         // of host_slots, entries read from the disk tier
  // Then, with partial-block reuse, a device block whose first `partial_tokens` tokens are
  // the request's next ones.
  std::optional<BlockId> partial;
  std::int32_t partial_tokens = 0;
  // (blocks.size() + host_slots.size()) * block_size + partial_tokens
  std::int32_t num_tokens = 0;

  std::size_t num_full_blocks() const { return blocks.size() + host_slots.size(); }
};

// The K/V of the first `num_tokens` positions of block `from` copied into block `to`.
struct PrefixCopy {
  BlockId from;
  BlockId to;
  std::int32_t num_tokens = 0;
};

// A copy of one block's K/V (every layer) between the device pool and the host tier.
struct BlockTransfer {
  BlockId device;
  std::int64_t host_slot = 0;
};

// The copies the backend must run before the next forward pass: every save, then every load
// (a block evicted and loaded again in the same step is saved before it is read), then every
// prefix copy (whose source may have been loaded in the same step). Then, once the copies are
// done with host memory, the disk tier's jobs are queued (their payloads: the host slots').
struct Transfers {
  std::vector<BlockTransfer> saves;       // device -> host: demoted or written-through blocks
  std::vector<BlockTransfer> loads;       // host -> device: matched host blocks
  std::vector<PrefixCopy> prefix_copies;  // device -> device: partial-block reuse
  std::vector<DiskWrite> disk_writes;     // host -> disk: written-through blocks (saved above)
  std::vector<DiskRead> disk_reads;       // disk -> reserved host slots (disk_read_slots)
  std::vector<std::vector<std::int64_t>> disk_read_slots;  // per disk read, per block
  bool empty() const {
    return saves.empty() && loads.empty() && prefix_copies.empty() && disk_writes.empty() &&
           disk_reads.empty();
  }
};

// What pin_prefix() did: how many leading blocks are pinned now, or why none was.
struct PinResult {
  std::int32_t num_blocks = 0;
  std::string error;
};

// Host- and disk-tier traffic since the engine started.
struct HostTierCounters {
  std::int64_t blocks_stored = 0;  // blocks copied to the host tier (demoted or written through)
  std::int64_t blocks_loaded = 0;  // host blocks copied back to the device
  std::int64_t hit_blocks = 0;     // prefix blocks matched in the host tier (counted at admission)
  std::int64_t disk_hit_blocks = 0;      // of hit_blocks, entries the disk tier had read
  std::int64_t disk_writes_skipped = 0;  // computed blocks not written: no host slot was free
};

class KvCacheManager {
 public:
  // `host_slots`: blocks of host tier (0: none; ignored when caching is off).
  // `partial_reuse`: match inside a block too (token-granular reuse).
  KvCacheManager(std::int64_t num_blocks, std::int32_t block_size, bool enable_caching,
                 std::int64_t host_slots = 0, bool partial_reuse = false);
  KvCacheManager(const KvCacheManager&) = delete;  // the pool's eviction hook points here
  KvCacheManager& operator=(const KvCacheManager&) = delete;

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
  // so the table covers `total_tokens`; matched host blocks get fresh device blocks,
  // registered now and loaded by the next take_transfers(), and a partial match's tokens are
  // copied into the fresh block after them (its source is held until then). False, with
  // nothing changed, when too few blocks are free or evictable.
  bool admit(SeqBlocks& seq, const PrefixMatch& match, std::int32_t total_tokens);
  // Grows the table of a sequence to cover `total_tokens`; false and no change if it can't.
  bool grow(SeqBlocks& seq, std::int32_t total_tokens);
  // Registers the blocks that `num_computed` tokens have filled; call after the step that
  // wrote them, so other requests see only K/V that exists. A block whose content is already
  // registered (an identical block, computed at the same time) is swapped for that block.
  void commit(SeqBlocks& seq, std::span<const TokenId> tokens, std::int32_t num_computed);
  // Releases the sequence's blocks: registered ones stay cached, the rest are freed (and a
  // prefix copy still pending into one of them is dropped).
  void free(SeqBlocks& seq);
  // The copies queued since the last call; the entries and blocks they read from stop being
  // held.
  Transfers take_transfers();

  // Prefix pins. The time (seconds on a steady clock) for what follows: pins that ended by
  // then are dropped, and hits from now on extend the pins they use by their TTL.
  void set_time(double now);
  // At most this many blocks pinned at once in the device pool, and host-tier entries (a
  // pinned block demoted keeps its pin there while the host budget allows; loaded back, it
  // is pinned on the device again, its pin extended as by any hit, while the device budget
  // allows).
  void set_pin_budget(std::int64_t blocks) { pin_budget_ = blocks; }
  void set_host_pin_budget(std::int64_t entries) { host_.set_pin_budget(entries); }
  // Pins the first `num_blocks` registered blocks of `seq` for `ttl` seconds from now (a
  // pin already longer stands); all or nothing: none when that would pin more blocks than
  // the budget, with the reason. ttl <= 0 unpins them instead.
  PinResult pin_prefix(const SeqBlocks& seq, std::int32_t num_blocks, double ttl);

  // The disk tier (not owned; null: none), which must outlive this manager's use of it: every
  // block computed from now on is written through, and sequences may read from it.
  void set_disk_tier(const DiskTier* disk) { disk_ = disk; }
  // For a waiting sequence matched as `m` (at most `max_tokens` tokens): when the disk tier
  // has the blocks that follow the match, reserves host slots for them and queues their read
  // in the next take_transfers(); true when it did, and the sequence then waits for it
  // (disk_read_pending). Looks once per sequence.
  bool start_disk_read(SeqBlocks& seq, std::span<const TokenId> tokens, const PrefixMatch& m,
                       std::int32_t max_tokens);
  bool disk_read_pending(const SeqBlocks& seq) const;
  std::size_t num_disk_reads() const { return disk_reads_.size(); }
  // The disk tier's finished jobs: written slots are released; the blocks a read verified
  // become host entries linked after what their chain matches before them (in chain order,
  // so later blocks follow earlier ones), and the rest of its slots are freed.
  void finish_disk_jobs(const DiskDone& done);

  // Why `m`, the match of `seq`'s tokens at most `max_tokens` long, ends where it does: the
  // block after it evicted (the ghost records), cached under another salt, continued by
  // cached blocks with other tokens (where the prompt differs), or nothing (cold, or the end
  // of what is cached). Costs a hash lookup and a scan of the blocks that continue the match
  // (as partial-block reuse's); call it once per request.
  CacheMiss explain_miss(const SeqBlocks& seq, std::span<const TokenId> tokens,
                         const PrefixMatch& m, std::int32_t max_tokens) const;
  const GhostIndex& ghosts() const { return ghosts_; }

  const HostTier& host_tier() const { return host_; }
  const HostTierCounters& host_counters() const { return host_counters_; }

  // How many blocks a table covering `total_tokens` needs beyond what `seq` holds.
  std::int64_t blocks_needed(const SeqBlocks& seq, std::int32_t total_tokens) const;
  // The pool's and the host tier's integrity checks; also that no copy is pending but the
  // write-through of blocks committed since take_transfers() (call between steps), and that
  // the host tier's reserved slots are those of the disk reads in flight.
  void check_integrity(std::span<const std::vector<BlockId>* const> tables) const;

 private:
  std::int64_t blocks_for(std::int32_t tokens) const;  // ceil(tokens / block_size)
  // The link of the block at `index` of a chain whose blocks before it are `parent`.
  static ChainLink link_at(std::size_t index, const SeqBlocks& seq, ContentId parent);
  // The device pool evicted `block`: the host tier takes it, or it becomes a ghost record.
  void on_device_evict(const EvictedBlock& block);
  void demote(const EvictedBlock& block);
  // After commit registered seq.blocks[index] as new contents: queue its write to the disk.
  void write_through(const SeqBlocks& seq, std::size_t index, std::span<const TokenId> tokens);
  // What a read from the disk tier needs at its end, kept while it runs.
  struct PendingRead {
    std::string salt;
    std::vector<TokenId> tokens;    // the chain's, through its last block read
    std::vector<BlockHash> hashes;  // the chain's, from block 0 through its last block read
    std::size_t first_block = 0;
    std::vector<std::int64_t> slots;  // reserved, one per block from first_block
  };
  void publish_read(const PendingRead& read, std::size_t num_ok);
  // The contents a chain's block `index` follows (index > 0), wherever they are cached now.
  std::optional<ContentId> content_before(const PendingRead& read, std::size_t index) const;
  // Registers the host block matched at `index` in the fresh device block there.
  void promote(SeqBlocks& seq, std::size_t index, std::int64_t slot);
  // seq.blocks[index] is unregistered and `held` holds its contents: share `held` instead.
  void share(SeqBlocks& seq, std::size_t index, BlockId held);

  // The partial match after `full` matched blocks whose last contents are `parent`.
  void match_partial(const SeqBlocks& seq, std::span<const TokenId> tokens, std::size_t full,
                     ContentId parent, std::int32_t max_tokens, PrefixMatch& m) const;

  std::int32_t block_size_;
  bool enable_caching_;
  bool partial_reuse_;
  BlockPool pool_;
  HostTier host_;
  GhostIndex ghosts_;
  Transfers pending_;
  HostTierCounters host_counters_;
  const DiskTier* disk_ = nullptr;
  std::map<std::uint64_t, PendingRead> disk_reads_;  // by ticket
  std::uint64_t next_ticket_ = 1;
  double now_ = 0;
  std::int64_t pin_budget_ = 0;
};

}  // namespace cachet::kv
