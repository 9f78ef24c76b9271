#include "kv/kv_cache_manager.h"

#include <fmt/format.h>

#include <algorithm>
#include <utility>

#include "cachet/errors.h"

namespace cachet::kv {

KvCacheManager::KvCacheManager(std::int64_t num_blocks, std::int32_t block_size,
                               bool enable_caching, std::int64_t host_slots, bool partial_reuse)
    : block_size_(block_size),
      enable_caching_(enable_caching),
      partial_reuse_(enable_caching && partial_reuse),
      pool_(num_blocks, block_size),
      host_(enable_caching ? host_slots : 0, block_size),
      ghosts_(static_cast<std::size_t>(
          std::clamp<std::int64_t>(2 * (num_blocks + host_.num_slots()), 1024, 65536))) {
  if (!enable_caching) return;
  pool_.set_on_evict([this](const EvictedBlock& block) { on_device_evict(block); });
  host_.set_on_evict([this](const BlockHash& hash) { ghosts_.record(hash, CacheTier::kHost); });
}

void KvCacheManager::on_device_evict(const EvictedBlock& block) {
  if (host_.num_slots() > 0) {
    demote(block);
    if (host_.lookup(block.hash, block.link, block.tokens)) return;
  }
  ghosts_.record(block.hash, CacheTier::kDevice);
}

ChainLink KvCacheManager::link_at(std::size_t index, const SeqBlocks& seq, ContentId parent) {
  return index == 0 ? ChainLink::first(seq.salt) : ChainLink::after(parent);
}

void KvCacheManager::demote(const EvictedBlock& block) {
  if (auto slot = host_.store(block)) {
    pending_.saves.push_back({block.id, *slot});
    ++host_counters_.blocks_stored;
  }
}

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
  // Transitive: block i must have been computed after the very contents matched at i - 1,
  // whichever tier holds them.
  ContentId parent;
  std::size_t i = 0;
  for (; i < limit; ++i) {
    auto block = tokens.subspan(i * static_cast<std::size_t>(block_size_),
                                static_cast<std::size_t>(block_size_));
    auto id = pool_.lookup(seq.hashes[i], link_at(i, seq, parent), block);
    if (!id) break;
    m.blocks.push_back(*id);
    parent = pool_.content_of(*id);
  }
  for (; i < limit && host_.num_used() > 0; ++i) {
    auto block = tokens.subspan(i * static_cast<std::size_t>(block_size_),
                                static_cast<std::size_t>(block_size_));
    auto slot = host_.lookup(seq.hashes[i], link_at(i, seq, parent), block);
    if (!slot) break;
    m.host_slots.push_back(*slot);
    m.num_from_disk += host_.from_disk(*slot) ? 1 : 0;
    parent = host_.content(*slot);
  }
  m.num_tokens = static_cast<std::int32_t>(i) * block_size_;
  if (partial_reuse_) match_partial(seq, tokens, i, parent, max_tokens, m);
  return m;
}

void KvCacheManager::match_partial(const SeqBlocks& seq, std::span<const TokenId> tokens,
                                   std::size_t full, ContentId parent, std::int32_t max_tokens,
                                   PrefixMatch& m) const {
  const auto start = static_cast<std::int64_t>(full) * block_size_;
  const std::int64_t end = std::min<std::int64_t>(
      {start + block_size_, max_tokens, static_cast<std::int64_t>(tokens.size())});
  if (end <= start) return;
  const auto next =
      tokens.subspan(static_cast<std::size_t>(start), static_cast<std::size_t>(end - start));
  if (auto hit = pool_.longest_partial(link_at(full, seq, parent), next)) {
    m.partial = hit->id;
    m.partial_tokens = hit->num_tokens;
    m.num_tokens += hit->num_tokens;
  }
}

CacheMiss KvCacheManager::explain_miss(const SeqBlocks& seq, std::span<const TokenId> tokens,
                                       const PrefixMatch& m, std::int32_t max_tokens) const {
  CacheMiss out;
  if (!enable_caching_) {
    out.reason = CacheMissReason::kCachingOff;
    return out;
  }
  out.at = m.num_tokens;
  const std::size_t full = m.num_full_blocks();
  const std::size_t limit =
      std::min(seq.hashes.size(), static_cast<std::size_t>(std::max(0, max_tokens) / block_size_));
  if (full >= limit) return out;  // every whole block it may serve, served
  if (auto tier = ghosts_.find(seq.hashes[full])) {
    out.reason = CacheMissReason::kEvicted;
    out.tier = *tier == CacheTier::kDevice ? "device" : "host";
    return out;
  }
  ContentId parent;
  if (full > 0)
    parent = full <= m.blocks.size() ? pool_.content_of(m.blocks[full - 1])
                                     : host_.content(m.host_slots[full - 1 - m.blocks.size()]);
  const auto next = pool_.next_blocks(link_at(full, seq, parent),
                                      tokens.subspan(full * static_cast<std::size_t>(block_size_),
                                                     static_cast<std::size_t>(block_size_)));
  if (full == 0 && next.under_other_salt) {
    out.reason = CacheMissReason::kOtherSalt;
  } else if (next.num_continuations > 0 && (full > 0 || next.longest_run > 0)) {
    // (Every first block of the salt "continues" the empty prefix: one counts only when it
    // shares a first token.)
    out.reason = CacheMissReason::kDiverged;
    out.at = static_cast<std::int32_t>(full) * block_size_ + next.longest_run;
    out.in_block = next.longest_run > 0;
  } else {
    out.reason = full == 0 ? CacheMissReason::kCold : CacheMissReason::kPrefixEnd;
  }
  return out;
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
  // Matched blocks that are cached (unreferenced) stop being evictable once we take them, and
  // so does a partial match's source until its copy has run.
  auto taken_from_lru = std::count_if(match.blocks.begin(), match.blocks.end(),
                                      [&](BlockId id) { return pool_.is_cached(id); });
  if (match.partial && pool_.is_cached(*match.partial)) ++taken_from_lru;
  if (fresh > pool_.num_allocatable() - taken_from_lru) return false;
  for (BlockId id : match.blocks) {
    pool_.ref(id);
    pool_.pin_refresh(id, now_);  // a hit extends the pin it uses
  }
  if (match.partial) pool_.ref(*match.partial);
  // Held first: the evictions allocate() makes demote blocks into the tier, which must not
  // evict the entries about to be loaded.
  for (std::int64_t slot : match.host_slots) host_.hold(slot);
  auto blocks = pool_.allocate(fresh);  // cannot fail: checked above
  seq.blocks = match.blocks;
  seq.blocks.insert(seq.blocks.end(), blocks->begin(), blocks->end());
  for (std::size_t k = 0; k < match.host_slots.size(); ++k)
    promote(seq, match.blocks.size() + k, match.host_slots[k]);
  seq.num_registered = static_cast<std::int32_t>(match.num_full_blocks());
  host_counters_.hit_blocks += static_cast<std::int64_t>(match.host_slots.size());
  host_counters_.disk_hit_blocks += static_cast<std::int64_t>(match.num_from_disk);
  if (match.partial)
    pending_.prefix_copies.push_back(
        {*match.partial, seq.blocks[match.num_full_blocks()], match.partial_tokens});
  return true;
}

void KvCacheManager::promote(SeqBlocks& seq, std::size_t index, std::int64_t slot) {
  const ContentId parent = index == 0 ? ContentId{} : pool_.content_of(seq.blocks[index - 1]);
  const BlockId own = seq.blocks[index];
  const BlockId held = pool_.register_block(own, host_.hash(slot), link_at(index, seq, parent),
                                            host_.tokens(slot), host_.content(slot));
  if (held != own) {
    // The device pool holds these contents under this link already (rare: the randomized
    // test meets it a few times in thousands of loads): share that block, load nothing.
    share(seq, index, held);
    host_.release_hold(slot);
    return;
  }
  pending_.loads.push_back({own, slot});
  host_.clear_from_disk(slot);  // from now on a hit on it is the host tier's
  ++host_counters_.blocks_loaded;
  // A pinned entry's pin comes back with it, extended by its TTL as by any hit.
  const auto [until, ttl] = host_.pin(slot);
  if (until > 0 && pool_.num_pinned() < pin_budget_)
    pool_.pin(own, std::max(until, now_ + ttl), ttl);
}

void KvCacheManager::share(SeqBlocks& seq, std::size_t index, BlockId held) {
  pool_.ref(held);
  pool_.release(std::span<const BlockId>(&seq.blocks[index], 1));
  seq.blocks[index] = held;
}

Transfers KvCacheManager::take_transfers() {
  Transfers out = std::exchange(pending_, {});
  for (const BlockTransfer& t : out.loads) host_.release_hold(t.host_slot);
  for (const PrefixCopy& c : out.prefix_copies) pool_.release(std::span<const BlockId>(&c.from, 1));
  return out;
}

void KvCacheManager::set_time(double now) {
  now_ = now;
  pool_.expire_pins(now);
  host_.expire_pins(now);
}

PinResult KvCacheManager::pin_prefix(const SeqBlocks& seq, std::int32_t num_blocks, double ttl) {
  const auto n = static_cast<std::size_t>(std::clamp(num_blocks, 0, seq.num_registered));
  const std::span<const BlockId> blocks(seq.blocks.data(), n);
  if (ttl <= 0) {
    for (BlockId id : blocks) pool_.unpin(id);
    return {};
  }
  const auto added =
      std::count_if(blocks.begin(), blocks.end(), [&](BlockId id) { return !pool_.is_pinned(id); });
  if (pool_.num_pinned() + added > pin_budget_)
    return {0, fmt::format("pinning {} more KV blocks would exceed the pin budget of {} blocks "
                           "({} pinned already; EngineConfig::max_pinned_fraction)",
                           added, pin_budget_, pool_.num_pinned())};
  for (BlockId id : blocks) pool_.pin(id, now_ + ttl, ttl);
  return {static_cast<std::int32_t>(n), {}};
}

void KvCacheManager::check_integrity(std::span<const std::vector<BlockId>* const> tables) const {
  pool_.check_integrity(tables);
  host_.check_integrity();
  std::int64_t reserved = 0;
  for (const auto& [ticket, read] : disk_reads_)
    reserved += static_cast<std::int64_t>(read.slots.size());
  if (reserved != host_.num_reserved())
    throw Error(ErrorCode::kInternal,
                fmt::format("KV cache integrity violated: {} host slots reserved, {} for the disk "
                            "reads in flight",
                            host_.num_reserved(), reserved));
  // Between steps only the write-through of the blocks the last step committed may wait (a
  // save each, with its disk write); everything an admission queued has run.
  if (!pending_.loads.empty() || !pending_.prefix_copies.empty() || !pending_.disk_reads.empty() ||
      pending_.saves.size() != pending_.disk_writes.size())
    throw Error(ErrorCode::kInternal,
                "KV cache integrity violated: block copies left pending after a step");
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
        link_at(at, seq, at == 0 ? ContentId{} : pool_.content_of(seq.blocks[at - 1]));
    // Contents the host tier holds too keep the identity they have there, so the two copies
    // stay one: the tier's children still follow this block, and demoting it copies nothing.
    const auto in_host = host_.lookup(seq.hashes[at], link, block);
    const BlockId own = seq.blocks[at];
    const BlockId held = pool_.register_block(own, seq.hashes[at], link, block,
                                              in_host ? host_.content(*in_host) : ContentId{});
    // Another sequence computed the same content first: share its block, free this copy.
    if (held != own)
      share(seq, at, held);
    else if (!in_host && disk_ != nullptr)
      write_through(seq, at, tokens);
  }
  seq.num_registered = std::max(seq.num_registered, full);
}

void KvCacheManager::write_through(const SeqBlocks& seq, std::size_t index,
                                   std::span<const TokenId> tokens) {
  const BlockHash& hash = seq.hashes[index];
  if (!disk_->writable() || disk_->contains(hash)) return;
  const BlockId id = seq.blocks[index];
  const auto block = static_cast<std::size_t>(block_size_);
  const ContentId parent = index == 0 ? ContentId{} : pool_.content_of(seq.blocks[index - 1]);
  const EvictedBlock copy{id, hash, pool_.content_of(id), link_at(index, seq, parent),
                          tokens.subspan(index * block, block)};
  const auto slot = host_.store(copy);
  if (!slot) {
    ++host_counters_.disk_writes_skipped;
    return;
  }
  host_.hold(*slot);  // until the disk tier has written it
  pending_.saves.push_back({id, *slot});
  ++host_counters_.blocks_stored;
  const auto prefix = tokens.first((index + 1) * block);
  pending_.disk_writes.push_back(
      {hash, seq.salt, std::vector<TokenId>(prefix.begin(), prefix.end()), *slot, {}});
}

bool KvCacheManager::start_disk_read(SeqBlocks& seq, std::span<const TokenId> tokens,
                                     const PrefixMatch& m, std::int32_t max_tokens) {
  if (disk_ == nullptr || seq.disk_probed || !enable_caching_) return false;
  seq.disk_probed = true;
  const std::size_t first = m.num_full_blocks();
  const std::size_t limit =
      std::min(seq.hashes.size(), static_cast<std::size_t>(std::max(0, max_tokens) / block_size_));
  // The matched host entries must survive the reservations (which evict the tier's LRU).
  for (std::int64_t slot : m.host_slots) host_.hold(slot);
  PendingRead read{seq.salt, {}, {}, first, {}};
  for (std::size_t i = first; i < limit && disk_->contains(seq.hashes[i]); ++i) {
    const auto slot = host_.reserve();
    if (!slot) break;
    read.slots.push_back(*slot);
  }
  for (std::int64_t slot : m.host_slots) host_.release_hold(slot);
  if (read.slots.empty()) return false;
  const std::size_t end = first + read.slots.size();
  read.tokens.assign(tokens.begin(),
                     tokens.begin() + static_cast<std::ptrdiff_t>(end) * block_size_);
  read.hashes.assign(seq.hashes.begin(), seq.hashes.begin() + static_cast<std::ptrdiff_t>(end));
  const std::uint64_t ticket = next_ticket_++;
  pending_.disk_reads.push_back(
      {ticket,
       read.salt,
       read.tokens,
       first,
       std::vector<BlockHash>(read.hashes.begin() + static_cast<std::ptrdiff_t>(first),
                              read.hashes.end()),
       {}});
  pending_.disk_read_slots.push_back(read.slots);
  disk_reads_.emplace(ticket, std::move(read));
  seq.disk_read = ticket;
  return true;
}

bool KvCacheManager::disk_read_pending(const SeqBlocks& seq) const {
  return seq.disk_read && disk_reads_.contains(*seq.disk_read);
}

void KvCacheManager::finish_disk_jobs(const DiskDone& done) {
  for (std::int64_t slot : done.written_slots) host_.release_hold(slot);
  for (const DiskReadDone& r : done.reads) {
    auto it = disk_reads_.find(r.ticket);
    if (it == disk_reads_.end())
      throw Error(
          ErrorCode::kInternal,
          fmt::format("KV disk tier: a read finished that was never started ({})", r.ticket));
    const PendingRead read = std::move(it->second);
    disk_reads_.erase(it);
    publish_read(read, r.num_ok);
  }
}

std::optional<ContentId> KvCacheManager::content_before(const PendingRead& read,
                                                        std::size_t index) const {
  SeqBlocks chain{read.salt,
                  {},
                  {read.hashes.begin(), read.hashes.begin() + static_cast<std::ptrdiff_t>(index)}};
  const PrefixMatch m = match(chain, read.tokens, static_cast<std::int32_t>(index) * block_size_);
  if (m.num_full_blocks() != index) return std::nullopt;
  return m.host_slots.empty() ? pool_.content_of(m.blocks.back())
                              : host_.content(m.host_slots.back());
}

void KvCacheManager::publish_read(const PendingRead& read, std::size_t num_ok) {
  // The blocks before the first one read may have been evicted meanwhile: then nothing links.
  std::optional<ContentId> parent;
  if (read.first_block > 0) parent = content_before(read, read.first_block);
  if (read.first_block > 0 && !parent) num_ok = 0;
  const auto block = static_cast<std::size_t>(block_size_);
  for (std::size_t k = 0; k < read.slots.size(); ++k) {
    if (k >= num_ok) {
      host_.cancel(read.slots[k]);
      continue;
    }
    const std::size_t index = read.first_block + k;
    const ChainLink link = index == 0 ? ChainLink::first(read.salt) : ChainLink::after(*parent);
    const auto tokens = std::span(read.tokens).subspan(index * block, block);
    // Contents the device pool holds already keep their identity there, as commit() does.
    const auto on_device = pool_.lookup(read.hashes[index], link, tokens);
    const ContentId content = on_device ? pool_.content_of(*on_device) : pool_.new_content();
    const std::int64_t slot =
        host_.publish(read.slots[k], read.hashes[index], link, tokens, content);
    parent = host_.content(slot);
  }
}

void KvCacheManager::free(SeqBlocks& seq) {
  // A prefix copy into a block freed before the copies run would land in whatever the block
  // is handed out for next (a load, another request's block): drop it.
  std::erase_if(pending_.prefix_copies, [&](const PrefixCopy& c) {
    if (std::find(seq.blocks.begin(), seq.blocks.end(), c.to) == seq.blocks.end()) return false;
    pool_.release(std::span<const BlockId>(&c.from, 1));
    return true;
  });
  pool_.release(seq.blocks);
  seq.blocks.clear();
  seq.num_registered = 0;
}

}  // namespace cachet::kv
