#include "kv/host_tier.h"

#include <fmt/format.h>

#include <algorithm>
#include <utility>

#include "cachet/errors.h"

namespace cachet::kv {
namespace {

[[noreturn]] void integrity_failure(const char* what, std::int64_t slot) {
  throw Error(ErrorCode::kInternal,
              fmt::format("KV host tier integrity violated: {} (slot {})", what, slot));
}

}  // namespace

HostTier::HostTier(std::int64_t num_slots, std::int32_t block_size)
    : block_size_(block_size),
      slots_(static_cast<std::size_t>(std::max<std::int64_t>(0, num_slots))),
      tokens_(slots_.size() * static_cast<std::size_t>(block_size)) {
  free_.reserve(slots_.size());
  for (std::int64_t i = num_slots - 1; i >= 0; --i) free_.push_back(i);
}

const HostTier::Entry& HostTier::at(std::int64_t slot) const {
  if (slot < 0 || slot >= num_slots()) integrity_failure("slot out of range", slot);
  return slots_[static_cast<std::size_t>(slot)];
}

HostTier::Entry& HostTier::at(std::int64_t slot) {
  return const_cast<Entry&>(std::as_const(*this).at(slot));
}

std::span<const TokenId> HostTier::tokens(std::int64_t slot) const {
  at(slot);  // range check
  return std::span<const TokenId>(tokens_).subspan(
      static_cast<std::size_t>(slot) * static_cast<std::size_t>(block_size_),
      static_cast<std::size_t>(block_size_));
}

bool HostTier::same_content(std::int64_t slot, const ChainLink& link,
                            std::span<const TokenId> tokens) const {
  const Entry& e = at(slot);
  if (!e.used || e.parent != link.parent) return false;
  if (!link.parent && e.salt != link.salt) return false;
  const auto stored = this->tokens(slot);
  return std::equal(tokens.begin(), tokens.end(), stored.begin(), stored.end());
}

std::optional<std::int64_t> HostTier::lookup(const BlockHash& hash, const ChainLink& link,
                                             std::span<const TokenId> tokens) const {
  auto [begin, end] = index_.equal_range(hash);
  for (auto it = begin; it != end; ++it)
    if (same_content(it->second, link, tokens)) return it->second;
  return std::nullopt;
}

std::optional<std::int64_t> HostTier::store(const EvictedBlock& block) {
  if (slots_.empty() || block.content.value == 0) return std::nullopt;
  std::optional<std::int64_t> held;
  if (auto it = by_content_.find(block.content.value); it != by_content_.end())
    held = it->second;
  else
    held = lookup(block.hash, block.link, block.tokens);
  if (held) {
    if (at(*held).holds == 0) touch(*held);
    carry_pin(*held, block);
    return std::nullopt;
  }
  const auto slot = take_slot();
  if (!slot) return std::nullopt;
  fill(*slot, block.hash, block.link, block.tokens, block.content);
  carry_pin(*slot, block);
  return slot;
}

// A demoted block's pin, kept by its entry while the budget allows (a later pin stands).
void HostTier::carry_pin(std::int64_t slot, const EvictedBlock& block) {
  const Entry& e = at(slot);
  if (block.pin_until <= e.pin_until) return;
  if (e.pin_until == 0 && num_pinned() >= pin_budget_) return;
  set_pin(slot, block.pin_until, block.pin_ttl);
}

void HostTier::set_pin(std::int64_t slot, double until, double ttl) {
  Entry& e = at(slot);
  const bool listed = e.used && e.holds == 0;
  if (listed) lru_remove(slot);
  if (e.pin_until > 0) pin_ends_.erase({e.pin_until, slot});
  e.pin_until = until;
  e.pin_ttl = until > 0 ? ttl : 0;
  if (until > 0) pin_ends_.emplace(until, slot);
  if (!listed) return;
  if (until > 0) {
    lru_push_back(slot);
    return;
  }
  // A pin that ended has gone unused for its whole TTL: first in line for eviction.
  e.lru_prev = -1;
  e.lru_next = lru_head_[0];
  if (lru_head_[0] >= 0)
    at(lru_head_[0]).lru_prev = slot;
  else
    lru_tail_[0] = slot;
  lru_head_[0] = slot;
}

void HostTier::expire_pins(double now) {
  while (!pin_ends_.empty() && pin_ends_.begin()->first <= now)
    set_pin(pin_ends_.begin()->second, 0, 0);
}

void HostTier::fill(std::int64_t slot, const BlockHash& hash, const ChainLink& link,
                    std::span<const TokenId> tokens, ContentId content) {
  Entry& e = at(slot);
  e.used = true;
  e.hash = hash;
  e.content = content;
  e.parent = link.parent;
  e.salt = link.parent ? std::string() : std::string(link.salt);
  std::copy(tokens.begin(), tokens.end(),
            tokens_.begin() + static_cast<std::ptrdiff_t>(slot) * block_size_);
  index_.emplace(hash, slot);
  by_content_.emplace(content.value, slot);
  lru_push_back(slot);
}

std::optional<std::int64_t> HostTier::reserve() {
  const auto slot = take_slot();
  if (!slot) return std::nullopt;
  at(*slot).reserved = true;
  ++num_reserved_;
  return slot;
}

std::int64_t HostTier::publish(std::int64_t slot, const BlockHash& hash, const ChainLink& link,
                               std::span<const TokenId> tokens, ContentId content) {
  if (!at(slot).reserved || content.value == 0 ||
      tokens.size() != static_cast<std::size_t>(block_size_))
    integrity_failure("publishing a slot that is not reserved, or without contents", slot);
  if (auto held = lookup(hash, link, tokens)) {
    cancel(slot);
    return *held;
  }
  at(slot).reserved = false;
  --num_reserved_;
  fill(slot, hash, link, tokens, content);
  at(slot).from_disk = true;
  return slot;
}

void HostTier::cancel(std::int64_t slot) {
  Entry& e = at(slot);
  if (!e.reserved) integrity_failure("cancelling a slot that is not reserved", slot);
  e = Entry{};
  --num_reserved_;
  free_.push_back(slot);
}

// A free slot, evicting the least recently used unheld entry when none is free: an unpinned
// one first, a pinned one only when no other is left.
std::optional<std::int64_t> HostTier::take_slot() {
  if (free_.empty()) {
    const std::int64_t victim = lru_head_[0] >= 0 ? lru_head_[0] : lru_head_[1];
    if (victim < 0) return std::nullopt;  // every entry is held
    if (on_evict_) on_evict_(at(victim).hash);
    drop(victim);
    ++num_evictions_;
  }
  const std::int64_t slot = free_.back();
  free_.pop_back();
  return slot;
}

void HostTier::drop(std::int64_t slot) {
  Entry& e = at(slot);
  lru_remove(slot);
  if (e.pin_until > 0) pin_ends_.erase({e.pin_until, slot});
  auto [begin, end] = index_.equal_range(e.hash);
  auto it = std::find_if(begin, end, [&](const auto& entry) { return entry.second == slot; });
  if (it == end) integrity_failure("evicting an entry missing from the hash index", slot);
  index_.erase(it);
  by_content_.erase(e.content.value);
  e = Entry{};
  free_.push_back(slot);
}

void HostTier::touch(std::int64_t slot) {
  if (!at(slot).used || at(slot).holds > 0)
    integrity_failure("touching a free or held entry", slot);
  lru_remove(slot);
  lru_push_back(slot);
}

void HostTier::hold(std::int64_t slot) {
  Entry& e = at(slot);
  if (!e.used) integrity_failure("holding a free entry", slot);
  if (e.holds++ == 0) lru_remove(slot);
}

void HostTier::release_hold(std::int64_t slot) {
  Entry& e = at(slot);
  if (!e.used || e.holds <= 0) integrity_failure("releasing an entry that is not held", slot);
  if (--e.holds == 0) lru_push_back(slot);
}

void HostTier::lru_push_back(std::int64_t slot) {
  Entry& e = at(slot);
  const int list = e.pin_until > 0 ? 1 : 0;
  e.lru_prev = lru_tail_[list];
  e.lru_next = -1;
  if (lru_tail_[list] >= 0)
    at(lru_tail_[list]).lru_next = slot;
  else
    lru_head_[list] = slot;
  lru_tail_[list] = slot;
}

void HostTier::lru_remove(std::int64_t slot) {
  Entry& e = at(slot);
  const int list = e.pin_until > 0 ? 1 : 0;
  if (e.lru_prev >= 0)
    at(e.lru_prev).lru_next = e.lru_next;
  else
    lru_head_[list] = e.lru_next;
  if (e.lru_next >= 0)
    at(e.lru_next).lru_prev = e.lru_prev;
  else
    lru_tail_[list] = e.lru_prev;
  e.lru_prev = e.lru_next = -1;
}

void HostTier::check_lru(int list, std::vector<bool>& in_lru) const {
  for (std::int64_t i = lru_head_[list], prev = -1; i >= 0; prev = i, i = at(i).lru_next) {
    if (in_lru[static_cast<std::size_t>(i)]) integrity_failure("an LRU cycle", i);
    if (at(i).lru_prev != prev) integrity_failure("broken LRU back link", i);
    if ((at(i).pin_until > 0) != (list == 1))
      integrity_failure("an entry in the LRU of the other pin state", i);
    in_lru[static_cast<std::size_t>(i)] = true;
  }
}

void HostTier::check_integrity() const {
  const std::size_t n = slots_.size();
  std::vector<bool> is_free(n, false), in_lru(n, false);
  for (std::int64_t slot : free_) {
    if (slot < 0 || slot >= num_slots() || is_free[static_cast<std::size_t>(slot)])
      integrity_failure("free list holds a bad or repeated slot", slot);
    is_free[static_cast<std::size_t>(slot)] = true;
  }
  check_lru(0, in_lru);
  check_lru(1, in_lru);
  std::size_t used = 0, pinned = 0;
  std::int64_t reserved = 0;
  for (std::size_t i = 0; i < n; ++i) {
    const Entry& e = slots_[i];
    const auto slot = static_cast<std::int64_t>(i);
    if (e.used && e.reserved) integrity_failure("a slot both used and reserved", slot);
    if ((e.used || e.reserved) == is_free[i])
      integrity_failure("a slot both taken and free, or neither", slot);
    if (e.reserved && (e.holds != 0 || e.from_disk))
      integrity_failure("a reserved slot held or marked as an entry", slot);
    reserved += e.reserved ? 1 : 0;
    if (in_lru[i] != (e.used && e.holds == 0))
      integrity_failure("the LRU differs from the used, unheld entries", slot);
    if (e.pin_until > 0 && (!e.used || !pin_ends_.contains({e.pin_until, slot})))
      integrity_failure("a pinned slot unused or missing from the pin ends", slot);
    pinned += e.pin_until > 0 ? 1 : 0;
    if (!e.used) continue;
    ++used;
    auto found = by_content_.find(e.content.value);
    if (e.content.value == 0 || found == by_content_.end() || found->second != slot)
      integrity_failure("the content index differs from an entry", slot);
    auto [begin, end] = index_.equal_range(e.hash);
    if (std::count_if(begin, end, [&](const auto& entry) { return entry.second == slot; }) != 1)
      integrity_failure("the hash index differs from an entry", slot);
  }
  if (index_.size() != used || by_content_.size() != used)
    integrity_failure("an index holds entries that are not used", -1);
  if (reserved != num_reserved_) integrity_failure("the reserved count differs from the slots", -1);
  if (pinned != pin_ends_.size() || num_pinned() > pin_budget_)
    integrity_failure("the pin ends differ from the pinned entries, or exceed the budget", -1);
}

}  // namespace cachet::kv
