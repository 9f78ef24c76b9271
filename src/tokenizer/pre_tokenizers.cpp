// Pre-tokenizers: Split, ByteLevel, Digits, Metaspace, Whitespace, WhitespaceSplit,
// Punctuation, BertPreTokenizer and Sequence. Each cuts a piece into smaller pieces the
// model sees separately; ByteLevel and Metaspace also rewrite the text.
#include <utility>

#include "tokenizer/components.h"
#include "tokenizer/regex.h"
#include "tokenizer/unicode.h"

namespace cachet::tokenizer {

namespace {

using Ranges = std::vector<std::pair<std::size_t, std::size_t>>;

enum class Behavior { kRemoved, kIsolated, kMergedWithPrevious, kMergedWithNext, kContiguous };

Behavior parse_behavior(const Json& json, const JsonPath& at) {
  const std::string name = string_field(json, "behavior", at);
  if (name == "Removed") return Behavior::kRemoved;
  if (name == "Isolated") return Behavior::kIsolated;
  if (name == "MergedWithPrevious") return Behavior::kMergedWithPrevious;
  if (name == "MergedWithNext") return Behavior::kMergedWithNext;
  if (name == "Contiguous") return Behavior::kContiguous;
  (at / "behavior").unsupported("unsupported split behavior '" + name + "'");
}

struct Segment {
  std::size_t start, end;
  bool is_match;
};

// Cuts `piece` at `matches` (sorted, non-overlapping) the way `tokenizers`'
// NormalizedString::split does for each delimiter behavior; empty pieces are dropped.
void split_at(Piece&& piece, const Ranges& matches, Behavior behavior, bool invert,
              std::vector<Piece>& out) {
  const std::string& text = piece.text;
  if (matches.empty() && !invert) {
    // Fast path: no delimiter, the piece stays whole (Removed drops nothing either).
    if (!text.empty()) out.push_back(std::move(piece));
    return;
  }
  // Segments alternate between gaps and matches; `invert` swaps their roles.
  std::vector<Segment> segments;
  segments.reserve(matches.size() * 2 + 1);
  std::size_t prev = 0;
  for (const auto& [start, end] : matches) {
    if (prev != start) segments.push_back({prev, start, invert});
    segments.push_back({start, end, !invert});
    prev = end;
  }
  if (prev != text.size()) segments.push_back({prev, text.size(), invert});

  std::vector<Segment> merged;
  merged.reserve(segments.size());
  switch (behavior) {
    case Behavior::kRemoved:
      for (const Segment& s : segments) {
        if (!s.is_match) merged.push_back(s);
      }
      break;
    case Behavior::kIsolated:
      merged = segments;
      break;
    case Behavior::kContiguous: {
      bool previous_match = false;
      for (const Segment& s : segments) {
        if (s.is_match == previous_match && !merged.empty()) {
          merged.back().end = s.end;
        } else {
          merged.push_back(s);
        }
        previous_match = s.is_match;
      }
      break;
    }
    case Behavior::kMergedWithPrevious: {
      bool previous_match = false;
      for (const Segment& s : segments) {
        if (s.is_match && !previous_match && !merged.empty()) {
          merged.back().end = s.end;
        } else {
          merged.push_back(s);
        }
        previous_match = s.is_match;
      }
      break;
    }
    case Behavior::kMergedWithNext: {
      bool previous_match = false;
      for (auto it = segments.rbegin(); it != segments.rend(); ++it) {
        if (it->is_match && !previous_match && !merged.empty()) {
          merged.back().start = it->start;
        } else {
          merged.push_back(*it);
        }
        previous_match = it->is_match;
      }
      std::reverse(merged.begin(), merged.end());
      break;
    }
  }
  for (const Segment& s : merged) {
    if (s.end == s.start) continue;
    out.push_back({text.substr(s.start, s.end - s.start), piece.at_start && s.start == 0});
  }
}

// Matches of a per-character predicate: every matching character is its own match.
template <class Predicate>
void char_matches(std::string_view text, Predicate predicate, Ranges& out) {
  for (std::size_t i = 0; i < text.size();) {
    const std::size_t start = i;
    if (predicate(next_code_point(text, i))) out.emplace_back(start, i);
  }
}

class Split final : public PreTokenizer {
 public:
  Split(std::unique_ptr<Regex> pattern, Behavior behavior, bool invert)
      : pattern_(std::move(pattern)), behavior_(behavior), invert_(invert) {}
  void split(Piece&& piece, std::vector<Piece>& out) const override {
    Ranges matches;
    pattern_->find_all(piece.text, matches);
    split_at(std::move(piece), matches, behavior_, invert_, out);
  }

 private:
  std::unique_ptr<Regex> pattern_;
  Behavior behavior_;
  bool invert_;
};

// The pre-tokenization regex of GPT-2, used by ByteLevel when use_regex is set.
constexpr const char* kGpt2Pattern =
    R"('s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+)";

class ByteLevel final : public PreTokenizer {
 public:
  ByteLevel(bool add_prefix_space, bool use_regex, const JsonPath& at)
      : add_prefix_space_(add_prefix_space) {
    if (use_regex) regex_ = std::make_unique<Regex>(kGpt2Pattern, at.str());
  }
  void split(Piece&& piece, std::vector<Piece>& out) const override {
    if (add_prefix_space_ && (piece.text.empty() || piece.text[0] != ' ')) {
      piece.text.insert(0, " ");
    }
    const std::size_t first = out.size();
    if (regex_) {
      Ranges matches;
      regex_->find_all(piece.text, matches);
      split_at(std::move(piece), matches, Behavior::kIsolated, false, out);
    } else if (!piece.text.empty()) {
      out.push_back(std::move(piece));
    }
    // Every byte becomes one printable character of the byte-level alphabet.
    const auto& table = byte_to_char();
    std::string mapped;
    for (std::size_t k = first; k < out.size(); ++k) {
      mapped.clear();
      mapped.reserve(out[k].text.size() * 2);
      for (unsigned char b : out[k].text) mapped.append(table[b]);
      out[k].text.swap(mapped);
    }
  }

 private:
  bool add_prefix_space_;
  std::unique_ptr<Regex> regex_;
};

class Digits final : public PreTokenizer {
 public:
  explicit Digits(bool individual) : individual_(individual) {}
  void split(Piece&& piece, std::vector<Piece>& out) const override {
    Ranges matches;
    char_matches(piece.text, is_numeric, matches);
    split_at(std::move(piece), matches, individual_ ? Behavior::kIsolated : Behavior::kContiguous,
             false, out);
  }

 private:
  bool individual_;
};

enum class PrependScheme { kAlways, kFirst, kNever };

class Metaspace final : public PreTokenizer {
 public:
  Metaspace(std::string replacement, PrependScheme scheme, bool split)
      : replacement_(std::move(replacement)), scheme_(scheme), split_(split) {}
  void split(Piece&& piece, std::vector<Piece>& out) const override {
    std::string text;
    text.reserve(piece.text.size() + replacement_.size());
    for (char c : piece.text) {
      if (c == ' ') {
        text.append(replacement_);
      } else {
        text.push_back(c);
      }
    }
    const bool starts = text.compare(0, replacement_.size(), replacement_) == 0;
    if (!starts && (scheme_ == PrependScheme::kAlways ||
                    (scheme_ == PrependScheme::kFirst && piece.at_start))) {
      text.insert(0, replacement_);
    }
    piece.text = std::move(text);
    if (!split_) {
      if (!piece.text.empty()) out.push_back(std::move(piece));
      return;
    }
    Ranges matches;
    for (std::size_t pos = piece.text.find(replacement_); pos != std::string::npos;
         pos = piece.text.find(replacement_, pos + replacement_.size())) {
      matches.emplace_back(pos, pos + replacement_.size());
    }
    split_at(std::move(piece), matches, Behavior::kMergedWithNext, false, out);
  }

 private:
  std::string replacement_;
  PrependScheme scheme_;
  bool split_;
};

class Whitespace final : public PreTokenizer {
 public:
  explicit Whitespace(const JsonPath& at) : regex_(R"(\w+|[^\w\s]+)", at.str()) {}
  void split(Piece&& piece, std::vector<Piece>& out) const override {
    Ranges matches;
    regex_.find_all(piece.text, matches);
    split_at(std::move(piece), matches, Behavior::kRemoved, true, out);
  }

 private:
  Regex regex_;
};

class WhitespaceSplit final : public PreTokenizer {
 public:
  void split(Piece&& piece, std::vector<Piece>& out) const override {
    Ranges matches;
    char_matches(piece.text, is_whitespace, matches);
    split_at(std::move(piece), matches, Behavior::kRemoved, false, out);
  }
};

class Punctuation final : public PreTokenizer {
 public:
  explicit Punctuation(Behavior behavior) : behavior_(behavior) {}
  void split(Piece&& piece, std::vector<Piece>& out) const override {
    Ranges matches;
    char_matches(piece.text, is_punctuation, matches);
    split_at(std::move(piece), matches, behavior_, false, out);
  }

 private:
  Behavior behavior_;
};

class SequencePreTokenizer final : public PreTokenizer {
 public:
  explicit SequencePreTokenizer(std::vector<std::unique_ptr<PreTokenizer>> steps)
      : steps_(std::move(steps)) {}
  void split(Piece&& piece, std::vector<Piece>& out) const override {
    std::vector<Piece> current, next;
    current.push_back(std::move(piece));
    for (const auto& step : steps_) {
      next.clear();
      for (Piece& p : current) step->split(std::move(p), next);
      current.swap(next);
    }
    for (Piece& p : current) out.push_back(std::move(p));
  }

 private:
  std::vector<std::unique_ptr<PreTokenizer>> steps_;
};

PrependScheme parse_prepend_scheme(const Json& json, const JsonPath& at) {
  if (const Json* scheme = optional_field(json, "prepend_scheme")) {
    const std::string name = scheme->is_string() ? scheme->get<std::string>() : "";
    if (name == "always") return PrependScheme::kAlways;
    if (name == "first") return PrependScheme::kFirst;
    if (name == "never") return PrependScheme::kNever;
    (at / "prepend_scheme").unsupported("unsupported prepend_scheme '" + scheme->dump() + "'");
  }
  // Files written before prepend_scheme existed say add_prefix_space instead.
  return bool_or(json, "add_prefix_space", true, at) ? PrependScheme::kAlways
                                                     : PrependScheme::kNever;
}

}  // namespace

std::unique_ptr<PreTokenizer> make_pre_tokenizer(const Json& json, const JsonPath& at) {
  const std::string type = type_of(json, at);
  if (type == "Split") {
    return std::make_unique<Split>(make_pattern(field(json, "pattern", at), at / "pattern"),
                                   parse_behavior(json, at), bool_or(json, "invert", false, at));
  }
  if (type == "ByteLevel") {
    return std::make_unique<ByteLevel>(bool_or(json, "add_prefix_space", true, at),
                                       bool_or(json, "use_regex", true, at), at);
  }
  if (type == "Digits") {
    return std::make_unique<Digits>(bool_or(json, "individual_digits", false, at));
  }
  if (type == "Metaspace") {
    std::string replacement = string_or(json, "replacement", "\xE2\x96\x81", at);
    if (replacement.empty()) (at / "replacement").invalid("empty replacement");
    return std::make_unique<Metaspace>(std::move(replacement), parse_prepend_scheme(json, at),
                                       bool_or(json, "split", true, at));
  }
  if (type == "Whitespace") return std::make_unique<Whitespace>(at);
  if (type == "WhitespaceSplit") return std::make_unique<WhitespaceSplit>();
  if (type == "Punctuation") {
    Behavior behavior = Behavior::kIsolated;
    if (optional_field(json, "behavior") != nullptr) behavior = parse_behavior(json, at);
    return std::make_unique<Punctuation>(behavior);
  }
  if (type == "BertPreTokenizer") {
    std::vector<std::unique_ptr<PreTokenizer>> steps;
    steps.push_back(std::make_unique<WhitespaceSplit>());
    steps.push_back(std::make_unique<Punctuation>(Behavior::kIsolated));
    return std::make_unique<SequencePreTokenizer>(std::move(steps));
  }
  if (type == "Sequence") {
    const Json& list = field(json, "pretokenizers", at);
    if (!list.is_array()) (at / "pretokenizers").invalid("expected an array");
    std::vector<std::unique_ptr<PreTokenizer>> steps;
    for (std::size_t i = 0; i < list.size(); ++i) {
      steps.push_back(make_pre_tokenizer(list[i], (at / "pretokenizers")[i]));
    }
    return std::make_unique<SequencePreTokenizer>(std::move(steps));
  }
  (at / "type").unsupported("unsupported pre-tokenizer type '" + type + "'");
}

}  // namespace cachet::tokenizer
