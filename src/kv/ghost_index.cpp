#include "kv/ghost_index.h"

namespace cachet::kv {

void GhostIndex::record(const BlockHash& hash, CacheTier tier) {
  if (capacity_ == 0) return;
  if (auto it = index_.find(hash); it != index_.end()) {
    it->second->tier = tier;
    order_.splice(order_.end(), order_, it->second);
    return;
  }
  if (order_.size() >= capacity_) {
    index_.erase(order_.front().hash);
    order_.pop_front();
  }
  order_.push_back({hash, tier});
  index_.emplace(hash, std::prev(order_.end()));
}

std::optional<CacheTier> GhostIndex::find(const BlockHash& hash) const {
  auto it = index_.find(hash);
  if (it == index_.end()) return std::nullopt;
  return it->second->tier;
}

}  // namespace cachet::kv
