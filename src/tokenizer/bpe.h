// The BPE model of tokenizer.json: a vocabulary, merges applied by rank, byte fallback,
// unknown-token handling and a bounded cache of recent words.
#pragma once

#include <array>
#include <cstdint>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

#include "cachet/types.h"
#include "tokenizer/json_fields.h"

namespace cachet::tokenizer {

struct StringHash {
  using is_transparent = void;
  std::size_t operator()(std::string_view s) const { return std::hash<std::string_view>{}(s); }
};
using Vocab = std::unordered_map<std::string, TokenId, StringHash, std::equal_to<>>;

// Open-addressing map from a pair of token ids to (rank, merged id); the hot lookup of BPE.
class MergeTable {
 public:
  struct Entry {
    std::uint64_t key = kEmpty;
    std::uint32_t rank = 0;
    TokenId merged = 0;
  };
  static constexpr std::uint64_t kEmpty = ~0ull;

  void reserve(std::size_t count);
  // A later merge of the same pair replaces the earlier one, as in `tokenizers`.
  void insert(TokenId left, TokenId right, std::uint32_t rank, TokenId merged);
  const Entry* find(TokenId left, TokenId right) const {
    if (entries_.empty()) return nullptr;
    const std::uint64_t key = pack(left, right);
    for (std::size_t i = hash(key) & mask_;; i = (i + 1) & mask_) {
      const Entry& e = entries_[i];
      if (e.key == key) return &e;
      if (e.key == kEmpty) return nullptr;
    }
  }

 private:
  static std::uint64_t pack(TokenId a, TokenId b) {
    return (static_cast<std::uint64_t>(static_cast<std::uint32_t>(a)) << 32) |
           static_cast<std::uint32_t>(b);
  }
  static std::size_t hash(std::uint64_t k) {
    k ^= k >> 33;
    k *= 0xff51afd7ed558ccdull;
    k ^= k >> 33;
    return static_cast<std::size_t>(k);
  }
  std::vector<Entry> entries_;
  std::size_t mask_ = 0;
};

class Bpe {
 public:
  // `json` is the "model" object of tokenizer.json (type "BPE").
  Bpe(const Json& json, const JsonPath& at);
  ~Bpe();

  // Appends the ids of one pre-tokenized piece. Thread-safe.
  void tokenize(std::string_view piece, std::vector<TokenId>& out) const;

  std::optional<TokenId> token_to_id(std::string_view token) const;
  // nullptr when `id` is not in the vocabulary.
  const std::string* id_to_token(TokenId id) const;
  // Number of tokens in the vocabulary.
  std::size_t vocab_count() const { return vocab_.size(); }
  // One past the largest id of the vocabulary.
  std::size_t id_limit() const { return id_to_token_.size(); }

 private:
  struct Cache;
  // The id of one character of a word, with the prefix/suffix decoration it needs.
  std::optional<TokenId> symbol_id(std::string_view ch, bool first, bool last) const;
  void merge_word(std::string_view word, std::vector<TokenId>& out) const;

  Vocab vocab_;
  std::vector<std::string> id_to_token_;
  std::vector<bool> has_id_;
  MergeTable merges_;
  // Ids of single characters below U+10000 (-1: not in the vocabulary); avoids hashing.
  std::vector<TokenId> char_ids_;
  std::array<TokenId, 256> byte_fallback_ids_{};  // <0xNN> tokens, -1 when missing
  std::optional<TokenId> unk_id_;
  std::string prefix_;  // continuing_subword_prefix
  std::string suffix_;  // end_of_word_suffix
  bool byte_fallback_ = false;
  bool fuse_unk_ = false;
  bool ignore_merges_ = false;
  std::unique_ptr<Cache> cache_;
};

}  // namespace cachet::tokenizer
