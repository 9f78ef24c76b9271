// Shared by the KV-cache manager's focused tests: token runs, and a sequence admitted and
// committed whole in one call (the engine's admission, forward pass and commit, minus the
// arithmetic).
#pragma once

#include <gtest/gtest.h>

#include <cstdint>
#include <string>
#include <vector>

#include "cachet/types.h"
#include "kv/kv_cache_manager.h"

namespace cachet::testing {

// first, first + 1, ..., first + n - 1.
inline std::vector<TokenId> tokens_from(TokenId first, int n) {
  std::vector<TokenId> t;
  for (int i = 0; i < n; ++i) t.push_back(first + i);
  return t;
}

inline std::vector<TokenId> concat(std::vector<TokenId> a, const std::vector<TokenId>& b) {
  a.insert(a.end(), b.begin(), b.end());
  return a;
}

// Matches `tokens` (all of them may hit), admits them and commits them as computed; the
// match in `out` when given.
inline kv::SeqBlocks admit_all(kv::KvCacheManager& kv, const std::vector<TokenId>& tokens,
                               const std::string& salt = "", kv::PrefixMatch* out = nullptr) {
  kv::SeqBlocks seq;
  seq.salt = salt;
  kv.update_hashes(seq, tokens);
  kv::PrefixMatch m = kv.match(seq, tokens, static_cast<std::int32_t>(tokens.size()));
  EXPECT_TRUE(kv.admit(seq, m, static_cast<std::int32_t>(tokens.size())));
  kv.commit(seq, tokens, static_cast<std::int32_t>(tokens.size()));
  if (out) *out = m;
  return seq;
}

}  // namespace cachet::testing
