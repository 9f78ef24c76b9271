#include "tokenizer/added_tokens.h"

#include <algorithm>

#include "tokenizer/unicode.h"

namespace cachet::tokenizer {

int TokenMatcher::child(int node, unsigned char byte) const {
  const auto& children = nodes_[node].children;
  const auto it = std::lower_bound(children.begin(), children.end(), byte,
                                   [](const auto& c, unsigned char b) { return c.first < b; });
  return it != children.end() && it->first == byte ? it->second : -1;
}

void TokenMatcher::add(std::string_view content, std::size_t index) {
  if (content.empty()) return;
  first_bytes_.set(static_cast<unsigned char>(content[0]));
  int node = 0;
  for (unsigned char byte : content) {
    int next = child(node, byte);
    if (next < 0) {
      next = static_cast<int>(nodes_.size());
      nodes_.emplace_back();
      auto& children = nodes_[node].children;
      children.insert(std::lower_bound(children.begin(), children.end(), byte,
                                       [](const auto& c, unsigned char b) { return c.first < b; }),
                      {byte, next});
    }
    node = next;
  }
  // The first token with a given content wins, like a map keyed by content.
  if (nodes_[node].token < 0) nodes_[node].token = static_cast<int>(index);
}

std::optional<TokenMatcher::Match> TokenMatcher::find(std::string_view text,
                                                      std::size_t from) const {
  if (empty()) return std::nullopt;
  for (std::size_t start = from; start < text.size(); ++start) {
    if (!first_bytes_.test(static_cast<unsigned char>(text[start]))) continue;
    int node = 0, best = -1;
    std::size_t best_end = 0;
    for (std::size_t i = start; i < text.size(); ++i) {
      node = child(node, static_cast<unsigned char>(text[i]));
      if (node < 0) break;
      if (nodes_[node].token >= 0) {
        best = nodes_[node].token;
        best_end = i + 1;
      }
    }
    if (best >= 0) return Match{start, best_end, static_cast<std::size_t>(best)};
  }
  return std::nullopt;
}

AddedVocabulary::AddedVocabulary(std::vector<AddedToken> tokens, const Normalizer* normalizer)
    : tokens_(std::move(tokens)) {
  for (std::size_t i = 0; i < tokens_.size(); ++i) {
    const AddedToken& token = tokens_[i];
    index_by_id_.emplace(token.id, i);
    if (token.normalized) {
      std::string content = token.content;
      if (normalizer != nullptr) normalizer->normalize(content);
      normalized_matcher_.add(content, i);
    } else {
      raw_matcher_.add(token.content, i);
    }
  }
}

const AddedToken* AddedVocabulary::by_id(TokenId id) const {
  const auto it = index_by_id_.find(id);
  return it == index_by_id_.end() ? nullptr : &tokens_[it->second];
}

const AddedToken* AddedVocabulary::by_content(std::string_view content) const {
  for (const AddedToken& token : tokens_) {
    if (token.content == content) return &token;
  }
  return nullptr;
}

namespace {

// The code point that ends text[0, end) (end > 0), and where it starts.
char32_t last_code_point(std::string_view text, std::size_t end, std::size_t& start) {
  start = end - 1;
  while (start > 0 && (static_cast<unsigned char>(text[start]) & 0xC0) == 0x80) --start;
  std::size_t i = start;
  return next_code_point(text, i);
}

}  // namespace

void AddedVocabulary::split(std::string_view text, bool normalized_pass,
                            std::vector<TextSegment>& out) const {
  const TokenMatcher& matcher = normalized_pass ? normalized_matcher_ : raw_matcher_;
  std::size_t done = 0;  // end of the last accepted token
  std::size_t search = 0;
  while (auto match = matcher.find(text, search)) {
    search = match->end;
    const AddedToken& token = tokens_[match->index];
    std::size_t start = match->start, stop = match->end;
    if (token.single_word) {
      std::size_t unused;
      const bool word_before = start > 0 && is_word_char(last_code_point(text, start, unused));
      std::size_t i = stop;
      const bool word_after = stop < text.size() && is_word_char(next_code_point(text, i));
      // Inside a word: not a match (and, as in `tokenizers`, the scan goes on after it).
      if (word_before || word_after) continue;
    }
    if (token.lstrip) {
      std::size_t new_start = start;
      while (new_start > 0) {
        std::size_t prev;
        if (!is_whitespace(last_code_point(text, new_start, prev))) break;
        new_start = prev;
      }
      // Whitespace already swallowed by the previous token stays with it.
      start = std::max(new_start, done);
    }
    if (token.rstrip) {
      while (stop < text.size()) {
        std::size_t i = stop;
        if (!is_whitespace(next_code_point(text, i))) break;
        stop = i;
      }
    }
    if (done < start) out.push_back({text.substr(done, start - done), std::nullopt, done});
    out.push_back({text.substr(start, stop - start), token.id, start});
    done = stop;
  }
  if (done < text.size()) out.push_back({text.substr(done), std::nullopt, done});
}

}  // namespace cachet::tokenizer
