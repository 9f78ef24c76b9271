// What the end-to-end benchmark programs share: the median of repetitions and seeded
// pseudo-random prompts.
#pragma once

#include <algorithm>
#include <cstdint>
#include <vector>

#include "cachet/types.h"

namespace cachet::bench {

// The upper median (the middle element of the sorted values); 0 for none.
inline double median(std::vector<double> v) {
  std::sort(v.begin(), v.end());
  return v.empty() ? 0.0 : v[v.size() / 2];
}

// n token ids in [0, vocab) from an xorshift stream seeded by `seed`.
inline std::vector<TokenId> tokens(int n, int vocab, std::uint64_t seed) {
  std::vector<TokenId> t;
  std::uint64_t x = seed * 0x9e3779b97f4a7c15ull + 7;
  for (int i = 0; i < n; ++i) {
    x ^= x << 13, x ^= x >> 7, x ^= x << 17;
    t.push_back(static_cast<TokenId>(x % static_cast<std::uint64_t>(vocab)));
  }
  return t;
}

}  // namespace cachet::bench
