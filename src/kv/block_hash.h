// Content identity of a KV block: XXH3-128 over its parent's hash, its token ids and the
// request's extra keys (the cache salt), each field tagged and length-prefixed so that no
// field's bytes can be mistaken for another's.
#pragma once

#include <cstdint>
#include <functional>
#include <span>
#include <string_view>

#include "cachet/types.h"

namespace cachet::kv {

struct BlockHash {
  std::uint64_t low = 0;
  std::uint64_t high = 0;
  friend bool operator==(const BlockHash&, const BlockHash&) = default;
};

struct BlockHashHasher {
  std::size_t operator()(const BlockHash& h) const noexcept {
    return static_cast<std::size_t>(h.low);
  }
};

// The hash of the first block of a sequence has no parent; `salt` (may be empty) isolates
// tenants: the same tokens under different salts never share blocks. Later blocks chain
// through their parent's hash, which already carries the salt.
BlockHash hash_first_block(std::span<const TokenId> tokens, std::string_view salt);
BlockHash hash_next_block(const BlockHash& parent, std::span<const TokenId> tokens);

}  // namespace cachet::kv
