#include "kv/block_pool.h"

#include <fmt/format.h>

#include <algorithm>
#include <unordered_set>
#include <utility>

#include "cachet/errors.h"

namespace cachet::kv {
namespace {

// A broken bookkeeping rule is a bug in cachet: it fails the engine (Error(kInternal)), never
// the process that embeds it.
[[noreturn]] void integrity_failure(const char* what, std::int64_t block) {
  throw Error(ErrorCode::kInternal,
              fmt::format("KV block pool integrity violated: {} (block {})", what, block));
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

const BlockPool::Block& BlockPool::at(BlockId id) const {
  if (id.value < 0 || static_cast<std::size_t>(id.value) >= blocks_.size())
    integrity_failure("block id out of range", id.value);
  return blocks_[static_cast<std::size_t>(id.value)];
}

std::optional<BlockPool::SaltId> BlockPool::find_salt(std::string_view salt) const {
  auto it = salts_.find(salt);
  if (it == salts_.end()) return std::nullopt;
  return SaltId{&it->first};
}

BlockPool::SaltId BlockPool::use_salt(std::string_view salt) {
  auto it = salts_.find(salt);
  if (it == salts_.end()) it = salts_.emplace(std::string(salt), 0).first;
  ++it->second;
  return SaltId{&it->first};
}

void BlockPool::unuse_salt(SaltId id) {
  auto it = id.name ? salts_.find(*id.name) : salts_.end();
  if (it == salts_.end() || &it->first != id.name)
    integrity_failure("a first block's salt is not interned", -1);
  if (--it->second == 0) salts_.erase(it);
}

bool BlockPool::same_link(const Block& b, const ChainLink& link) const {
  if (link.parent) {
    const ContentId* parent = std::get_if<ContentId>(&b.after);
    return parent != nullptr && *parent == *link.parent;
  }
  const SaltId* salt = std::get_if<SaltId>(&b.after);
  return salt != nullptr && find_salt(link.salt) == *salt;
}

std::uint64_t BlockPool::children_key(const Block& b) {
  const ContentId* parent = std::get_if<ContentId>(&b.after);
  return parent != nullptr ? parent->value : 0;
}

bool BlockPool::same_content(BlockId id, const ChainLink& link,
                             std::span<const TokenId> tokens) const {
  if (!same_link(at(id), link)) return false;
  if (tokens.size() != static_cast<std::size_t>(block_size_)) return false;
  const TokenId* stored = tokens_.data() + static_cast<std::size_t>(id.value) * block_size_;
  return std::equal(tokens.begin(), tokens.end(), stored);
}

std::optional<BlockId> BlockPool::lookup(const BlockHash& hash, const ChainLink& link,
                                         std::span<const TokenId> tokens) const {
  auto [begin, end] = index_.equal_range(hash);
  for (auto it = begin; it != end; ++it)
    if (same_content(it->second, link, tokens)) return it->second;
  return std::nullopt;
}

std::int32_t BlockPool::leading_run(BlockId id, std::span<const TokenId> tokens) const {
  const std::size_t limit = std::min(tokens.size(), static_cast<std::size_t>(block_size_));
  const TokenId* stored = tokens_.data() + static_cast<std::size_t>(id.value) * block_size_;
  return static_cast<std::int32_t>(
      std::mismatch(tokens.begin(), tokens.begin() + static_cast<std::ptrdiff_t>(limit), stored)
          .first -
      tokens.begin());
}

std::optional<BlockPool::PartialHit> BlockPool::longest_partial(
    const ChainLink& link, std::span<const TokenId> tokens) const {
  std::optional<PartialHit> best;
  auto [begin, end] = children_.equal_range(link.parent ? link.parent->value : 0);
  for (auto it = begin; it != end; ++it) {
    if (!same_link(at(it->second), link)) continue;
    const std::int32_t run = leading_run(it->second, tokens);
    if (run > 0 && (!best || run > best->num_tokens)) best = PartialHit{it->second, run};
  }
  return best;
}

BlockPool::NextBlocks BlockPool::next_blocks(const ChainLink& link,
                                             std::span<const TokenId> tokens) const {
  NextBlocks out;
  const auto whole =
      static_cast<std::int32_t>(std::min(tokens.size(), static_cast<std::size_t>(block_size_)));
  auto [begin, end] = children_.equal_range(link.parent ? link.parent->value : 0);
  for (auto it = begin; it != end; ++it) {
    const std::int32_t run = leading_run(it->second, tokens);
    if (!same_link(at(it->second), link)) {  // a first block under another salt
      out.under_other_salt |= run == whole;
      continue;
    }
    ++out.num_continuations;
    out.longest_run = std::max(out.longest_run, run);
  }
  return out;
}

std::optional<std::vector<BlockId>> BlockPool::allocate(std::int64_t n) {
  if (n < 0 || n > num_allocatable()) return std::nullopt;
  std::vector<BlockId> out;
  out.reserve(static_cast<std::size_t>(n));
  while (static_cast<std::int64_t>(out.size()) < n) {
    // Unpinned cached blocks first; pinned ones only when none is left.
    if (free_.empty()) evict(BlockId{lru_head_[0] >= 0 ? lru_head_[0] : lru_head_[1]});
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

BlockId BlockPool::register_block(BlockId id, const BlockHash& hash, const ChainLink& link,
                                  std::span<const TokenId> tokens, ContentId content) {
  Block& b = at(id);
  if (b.ref_count <= 0) integrity_failure("registering a block that is not in use", id.value);
  if (b.hash || tokens.size() != static_cast<std::size_t>(block_size_))
    integrity_failure("bad registration", id.value);
  if (link.parent && link.parent->value == 0)
    integrity_failure("registering a block after an unregistered parent", id.value);
  if (content.value >= next_content_)
    integrity_failure("registering contents under an identity never handed out", id.value);
  if (auto same = lookup(hash, link, tokens)) return *same;
  b.hash = hash;
  b.content = content.value != 0 ? content : ContentId{next_content_++};
  if (link.parent)
    b.after = *link.parent;
  else
    b.after = use_salt(link.salt);
  std::copy(tokens.begin(), tokens.end(),
            tokens_.begin() + static_cast<std::ptrdiff_t>(id.value) * block_size_);
  index_.emplace(hash, id);
  children_.emplace(children_key(b), id);
  return id;
}

void BlockPool::evict(BlockId id) {
  Block& b = at(id);
  if (on_evict_) {
    ChainLink link;
    if (const ContentId* parent = std::get_if<ContentId>(&b.after))
      link = ChainLink::after(*parent);
    else if (const SaltId* salt = std::get_if<SaltId>(&b.after); salt && salt->name)
      link = ChainLink::first(*salt->name);
    const TokenId* first = tokens_.data() + static_cast<std::size_t>(id.value) * block_size_;
    on_evict_({id, *b.hash, b.content, link,
               std::span<const TokenId>(first, static_cast<std::size_t>(block_size_)), b.pin_until,
               b.pin_ttl});
  }
  lru_remove(id);
  --num_cached_;
  auto [begin, end] = index_.equal_range(*b.hash);
  auto it = std::find_if(begin, end, [&](const auto& entry) { return entry.second == id; });
  if (it == end) integrity_failure("evicting a block missing from the hash index", id.value);
  index_.erase(it);
  auto [first, last] = children_.equal_range(children_key(b));
  auto child = std::find_if(first, last, [&](const auto& entry) { return entry.second == id; });
  if (child == last)
    integrity_failure("evicting a block missing from the children index", id.value);
  children_.erase(child);
  if (const SaltId* salt = std::get_if<SaltId>(&b.after)) unuse_salt(*salt);
  b.hash.reset();
  b.after = SaltId{};
  b.content = {};  // links to what it held no longer match it
  if (b.pin_until > 0) pin_ends_.erase({b.pin_until, id.value});
  b.pin_until = b.pin_ttl = 0;
  free_.push_back(id);
  if (track_freed_) freed_.push_back(id);
  ++num_evictions_;
}

void BlockPool::lru_push_back(BlockId id) {
  Block& b = at(id);
  const int list = b.pin_until > 0 ? 1 : 0;
  b.lru_prev = lru_tail_[list];
  b.lru_next = -1;
  if (lru_tail_[list] >= 0)
    blocks_[static_cast<std::size_t>(lru_tail_[list])].lru_next = id.value;
  else
    lru_head_[list] = id.value;
  lru_tail_[list] = id.value;
}

void BlockPool::lru_remove(BlockId id) {
  Block& b = at(id);
  const int list = b.pin_until > 0 ? 1 : 0;
  if (b.lru_prev >= 0)
    blocks_[static_cast<std::size_t>(b.lru_prev)].lru_next = b.lru_next;
  else
    lru_head_[list] = b.lru_next;
  if (b.lru_next >= 0)
    blocks_[static_cast<std::size_t>(b.lru_next)].lru_prev = b.lru_prev;
  else
    lru_tail_[list] = b.lru_prev;
  b.lru_prev = b.lru_next = -1;
}

void BlockPool::set_pin(BlockId id, double until) {
  Block& b = at(id);
  const bool cached = b.ref_count == 0 && b.hash;
  if (cached) lru_remove(id);
  if (b.pin_until > 0) pin_ends_.erase({b.pin_until, id.value});
  b.pin_until = until;
  if (until > 0) pin_ends_.emplace(until, id.value);
  if (!cached) return;
  if (until > 0) {
    lru_push_back(id);
  } else {
    // A pin that ended has gone unused for its whole TTL: first in line for eviction.
    b.lru_prev = -1;
    b.lru_next = lru_head_[0];
    if (lru_head_[0] >= 0)
      blocks_[static_cast<std::size_t>(lru_head_[0])].lru_prev = id.value;
    else
      lru_tail_[0] = id.value;
    lru_head_[0] = id.value;
  }
}

void BlockPool::pin(BlockId id, double until, double ttl) {
  Block& b = at(id);
  if (!b.hash) integrity_failure("pinning an unregistered block", id.value);
  if (until <= 0) integrity_failure("pinning until a time that is no time", id.value);
  b.pin_ttl = ttl;
  if (until > b.pin_until) set_pin(id, until);
}

void BlockPool::pin_refresh(BlockId id, double now) {
  const Block& b = at(id);
  if (b.pin_until > 0 && now + b.pin_ttl > b.pin_until) set_pin(id, now + b.pin_ttl);
}

void BlockPool::unpin(BlockId id) {
  if (at(id).pin_until > 0) set_pin(id, 0);
}

void BlockPool::expire_pins(double now) {
  while (!pin_ends_.empty() && pin_ends_.begin()->first <= now)
    set_pin(BlockId{pin_ends_.begin()->second}, 0);
}

// The hash index and the salt table against the blocks' registrations.
void BlockPool::check_index() const {
  std::vector<bool> indexed(blocks_.size(), false);
  for (const auto& [hash, id] : index_) {
    const Block& b = at(id);
    if (!b.hash || *b.hash != hash || indexed[static_cast<std::size_t>(id.value)])
      integrity_failure("hash index entry differs from its block's registration", id.value);
    indexed[static_cast<std::size_t>(id.value)] = true;
  }
  std::unordered_map<const std::string*, std::int64_t> first_blocks;  // salt -> its first blocks
  std::unordered_set<std::uint64_t> contents;
  for (std::size_t i = 0; i < blocks_.size(); ++i) {
    const Block& b = blocks_[i];
    if (b.hash && !indexed[i])
      integrity_failure("a registered block is missing from the hash index",
                        static_cast<std::int64_t>(i));
    if (b.hash.has_value() != (b.content.value != 0) ||
        (b.hash && !contents.insert(b.content.value).second))
      integrity_failure("a registered block's content identity is missing or not unique",
                        static_cast<std::int64_t>(i));
    if (const SaltId* salt = std::get_if<SaltId>(&b.after); salt && b.hash)
      ++first_blocks[salt->name];
  }
  for (const auto& [key, id] : children_) {
    const Block& b = at(id);
    if (!b.hash || children_key(b) != key)
      integrity_failure("children index entry differs from its block's registration", id.value);
  }
  if (children_.size() != index_.size())
    integrity_failure("the children index and the hash index differ in size", -1);
  for (const auto& [salt, uses] : salts_)
    if (uses <= 0 || first_blocks[&salt] != uses)
      integrity_failure("a salt's count differs from its first blocks", uses);
  if (first_blocks.size() != salts_.size())
    integrity_failure("a first block's salt is not interned", -1);
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
  for (const int list : {0, 1}) {
    for (std::int32_t i = lru_head_[list], prev = -1; i >= 0;
         prev = i, i = blocks_[static_cast<std::size_t>(i)].lru_next) {
      if (static_cast<std::size_t>(i) >= n || seen[static_cast<std::size_t>(i)] != Seen::kNone)
        integrity_failure("block both free and in an LRU, or an LRU cycle", i);
      if (blocks_[static_cast<std::size_t>(i)].lru_prev != prev)
        integrity_failure("broken LRU back link", i);
      if ((blocks_[static_cast<std::size_t>(i)].pin_until > 0) != (list == 1))
        integrity_failure("a block in the LRU of the other pin state", i);
      seen[static_cast<std::size_t>(i)] = Seen::kLru;
      ++lru_count;
    }
  }
  if (lru_count != num_cached_)
    integrity_failure("cached count differs from the LRU length", lru_count);
  for (std::size_t i = 0; i < n; ++i) {
    const Block& b = blocks_[i];
    const auto id = static_cast<std::int64_t>(i);
    if (b.ref_count != refs[i])
      integrity_failure("ref count differs from block-table references", id);
    const bool is_free = b.ref_count == 0 && !b.hash;
    const bool is_cached = b.ref_count == 0 && b.hash;
    if (is_free != (seen[i] == Seen::kFree))
      integrity_failure("free block not on the free stack (or the reverse)", id);
    if (is_cached != (seen[i] == Seen::kLru))
      integrity_failure("cached block not in the LRU (or the reverse)", id);
    if (b.pin_until > 0 &&
        (!b.hash || !pin_ends_.contains({b.pin_until, static_cast<std::int32_t>(i)})))
      integrity_failure("a pinned block unregistered or missing from the pin ends", id);
  }
  for (const auto& [until, block] : pin_ends_)
    if (static_cast<std::size_t>(block) >= n ||
        blocks_[static_cast<std::size_t>(block)].pin_until != until)
      integrity_failure("a pin end that no block has", block);
  check_index();
}

}  // namespace cachet::kv
