// Added tokens (special tokens such as "<|im_start|>" and user-added words): found in the
// text before normalization and never split further.
#pragma once

#include <bitset>
#include <optional>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

#include "cachet/types.h"
#include "tokenizer/components.h"

namespace cachet::tokenizer {

struct AddedToken {
  TokenId id = 0;
  std::string content;
  bool single_word = false;  // match only when not inside a word
  bool lstrip = false;       // swallow the whitespace on its left
  bool rstrip = false;       // swallow the whitespace on its right
  bool normalized = false;   // match in the normalized text instead of the raw text
  bool special = false;      // skipped by decode(skip_special_tokens)
};

// A part of a text: an added token (`id`) or text to tokenize (`offset` is its byte offset
// in the string that was split).
struct TextSegment {
  std::string_view text;
  std::optional<TokenId> id;
  std::size_t offset = 0;
};

// A set of literal tokens matched leftmost-longest, as an Aho-Corasick automaton with that
// match kind would (`tokenizers` uses one); a byte trie is plenty for a few hundred tokens.
class TokenMatcher {
 public:
  void add(std::string_view content, std::size_t index);
  bool empty() const { return nodes_.size() <= 1; }
  // The leftmost-longest match at or after `from`: {start, end, index}, or nullopt.
  struct Match {
    std::size_t start, end, index;
  };
  std::optional<Match> find(std::string_view text, std::size_t from) const;

 private:
  struct Node {
    std::vector<std::pair<unsigned char, int>> children;  // sorted by byte
    int token = -1;                                       // index of the token ending here
  };
  int child(int node, unsigned char byte) const;
  std::vector<Node> nodes_{1};
  std::bitset<256> first_bytes_;
};

class AddedVocabulary {
 public:
  // Token contents with normalized=true are matched after `normalizer` (may be null) ran on
  // them, since they are looked for in normalized text.
  AddedVocabulary(std::vector<AddedToken> tokens, const Normalizer* normalizer);

  // Splits raw text on the tokens with normalized=false (`normalized_pass` false) or
  // normalized text on those with normalized=true, applying single_word/lstrip/rstrip.
  // Appends the segments in order; empty text segments are left out.
  void split(std::string_view text, bool normalized_pass, std::vector<TextSegment>& out) const;
  bool has_normalized_tokens() const { return !normalized_matcher_.empty(); }

  const AddedToken* by_id(TokenId id) const;
  const AddedToken* by_content(std::string_view content) const;
  const std::vector<AddedToken>& tokens() const { return tokens_; }

 private:
  std::vector<AddedToken> tokens_;
  std::unordered_map<TokenId, std::size_t> index_by_id_;
  TokenMatcher raw_matcher_, normalized_matcher_;
};

}  // namespace cachet::tokenizer
