#include "kv/block_hash.h"

#include <xxhash.h>

#include <cstring>
#include <vector>

namespace cachet::kv {
namespace {

// Field tags of the hash input. Every field is tag, 8-byte length, bytes.
enum : std::uint8_t { kTagParent = 1, kTagTokens = 2, kTagSalt = 3, kTagRoot = 4 };

void put(std::vector<std::uint8_t>& buf, std::uint8_t tag, const void* data, std::uint64_t size) {
  const std::size_t at = buf.size();
  buf.resize(at + 1 + sizeof size + size);
  buf[at] = tag;
  std::memcpy(buf.data() + at + 1, &size, sizeof size);
  if (size > 0) std::memcpy(buf.data() + at + 1 + sizeof size, data, size);
}

BlockHash digest(const std::vector<std::uint8_t>& buf) {
  XXH128_hash_t h = XXH3_128bits(buf.data(), buf.size());
  return BlockHash{h.low64, h.high64};
}

std::vector<std::uint8_t>& scratch() {
  thread_local std::vector<std::uint8_t> buf;
  buf.clear();
  return buf;
}

}  // namespace

BlockHash hash_first_block(std::span<const TokenId> tokens, std::string_view salt) {
  auto& buf = scratch();
  put(buf, kTagRoot, nullptr, 0);
  put(buf, kTagSalt, salt.data(), salt.size());
  put(buf, kTagTokens, tokens.data(), tokens.size_bytes());
  return digest(buf);
}

BlockHash hash_next_block(const BlockHash& parent, std::span<const TokenId> tokens) {
  auto& buf = scratch();
  const std::uint64_t words[2] = {parent.low, parent.high};
  put(buf, kTagParent, words, sizeof words);
  put(buf, kTagTokens, tokens.data(), tokens.size_bytes());
  return digest(buf);
}

}  // namespace cachet::kv
