// RequestOutput::cache_miss and EngineStats::prefix_cache_misses as the JSON the commands
// print (`generate` per output and with --stats, `bench serve` per run) and the server sends
// (each choice's `cache_miss`). Uses only the public API.
#pragma once

#include <array>
#include <nlohmann/json.hpp>
#include <string>

#include "cachet/engine.h"

namespace cachet::serve {

inline nlohmann::json cache_miss_json(const CacheMiss& m) {
  nlohmann::json j = {{"reason", std::string(to_string(m.reason))}, {"at", m.at}};
  if (m.reason == CacheMissReason::kDiverged) j["in_block"] = m.in_block;
  if (m.reason == CacheMissReason::kEvicted) j["tier"] = std::string(m.tier);
  return j;
}

// {"none": 3, "cold": 1, ...}: every reason, in CacheMissReason's order.
inline nlohmann::json cache_misses_json(
    const std::array<std::int64_t, kNumCacheMissReasons>& counts) {
  nlohmann::json j = nlohmann::json::object();
  for (std::size_t i = 0; i < counts.size(); ++i)
    j[std::string(to_string(static_cast<CacheMissReason>(i)))] = counts[i];
  return j;
}

}  // namespace cachet::serve
