// Shared by the prefix-cache property tests: seeded random helpers, token streams with
// controlled prefix sharing, and the model's notion of a block's content.
#pragma once

#include <algorithm>
#include <cstdint>
#include <random>
#include <span>
#include <string>
#include <utility>
#include <vector>

#include "cachet/types.h"
#include "kv/block_hash.h"

namespace cachet::testing {

// A block's identity as the model sees it: the salt and every token from the start of the
// sequence to the end of the block. Two blocks with equal keys hold the same K/V.
using Key = std::pair<std::string, std::vector<TokenId>>;

inline int uniform(std::mt19937_64& rng, int lo, int hi) {  // inclusive
  return std::uniform_int_distribution<int>(lo, hi)(rng);
}
inline bool chance(std::mt19937_64& rng, double p) { return std::bernoulli_distribution(p)(rng); }

inline Key key_of(const std::string& salt, const std::vector<TokenId>& tokens,
                  std::size_t num_blocks, std::int32_t block_size) {
  return {salt, std::vector<TokenId>(
                    tokens.begin(),
                    tokens.begin() + static_cast<std::ptrdiff_t>(num_blocks * block_size))};
}

// The chain hash of a key's last block, recomputed from scratch (not through SeqBlocks), so
// a block's stored hash can be checked against the content the model says it holds.
inline kv::BlockHash chain_hash(const Key& key, std::int32_t block_size) {
  std::span<const TokenId> all(key.second);
  kv::BlockHash h =
      kv::hash_first_block(all.first(static_cast<std::size_t>(block_size)), key.first);
  for (std::size_t at = static_cast<std::size_t>(block_size); at < all.size(); at += block_size)
    h = kv::hash_next_block(h, all.subspan(at, static_cast<std::size_t>(block_size)));
  return h;
}

// Token streams that requests share prefixes of ("system prompts"), and fresh tails.
class TokenSource {
 public:
  TokenSource(std::mt19937_64& rng, int num_families, int family_len) : rng_(rng) {
    families_.resize(static_cast<std::size_t>(num_families));
    for (auto& f : families_)
      for (int i = 0; i < family_len; ++i) f.push_back(uniform(rng_, 0, 999));
  }
  // `len` tokens of which a random 0-100 % prefix is a random family's.
  std::vector<TokenId> make(int len) {
    const auto& f = families_[static_cast<std::size_t>(
        uniform(rng_, 0, static_cast<int>(families_.size()) - 1))];
    int shared = 0;
    switch (uniform(rng_, 0, 3)) {
      case 0:
        shared = 0;
        break;
      case 1:
        shared = len;
        break;
      default:
        shared = uniform(rng_, 0, len);
    }
    shared = std::min<int>(shared, static_cast<int>(f.size()));
    std::vector<TokenId> t(f.begin(), f.begin() + shared);
    // Fresh tokens come from a range the families never use, so "not shared" really is.
    while (static_cast<int>(t.size()) < len) t.push_back(uniform(rng_, 1000, 100000));
    return t;
  }
  // A length that ends on a block boundary, one past or before it, or anywhere.
  int length(std::int32_t block_size, int max_blocks) {
    const int blocks = uniform(rng_, 0, max_blocks);
    int len = blocks * block_size;
    switch (uniform(rng_, 0, 3)) {
      case 0:
        break;
      case 1:
        len += 1;
        break;
      case 2:
        len -= 1;
        break;
      default:
        len += uniform(rng_, 0, block_size - 1);
    }
    return std::max(1, len);
  }

 private:
  std::mt19937_64& rng_;
  std::vector<std::vector<TokenId>> families_;
};

// n consecutive token ids from `start`.
inline std::vector<TokenId> counting(int n, TokenId start) {
  std::vector<TokenId> t;
  for (int i = 0; i < n; ++i) t.push_back(start + i);
  return t;
}

}  // namespace cachet::testing
