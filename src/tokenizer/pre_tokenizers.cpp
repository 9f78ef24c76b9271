// Pre-tokenizers: Split, ByteLevel, Digits, Metaspace, Whitespace, WhitespaceSplit,
// Punctuation, BertPreTokenizer and Sequence. Each cuts a piece into smaller pieces the
// model sees separately; ByteLevel and Metaspace also rewrite the text.
#include <algorithm>
#include <utility>

#include "tokenizer/components.h"
#include "tokenizer/regex.h"
#include "tokenizer/unicode.h"

namespace cachet::tokenizer {

namespace {

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

// Turns the successive segments of a piece (alternately gaps and delimiter matches) into
// output pieces the way `tokenizers`' NormalizedString::split does for each behavior, in one
// forward pass. Empty pieces are dropped.
class Splitter {
 public:
  Splitter(Piece& piece, Behavior behavior, bool invert, PieceSink& out)
      : piece_(piece), behavior_(behavior), invert_(invert), out_(out) {}

  // Feeds the matches [start, end), in order; the gaps between them are filled in.
  void match(std::size_t start, std::size_t end) {
    if (prev_ != start) segment(prev_, start, invert_);
    segment(start, end, !invert_);
    prev_ = end;
  }
  void finish() {
    if (prev_ != piece_.text.size()) segment(prev_, piece_.text.size(), invert_);
    flush();
  }

 private:
  void segment(std::size_t start, std::size_t end, bool is_match) {
    switch (behavior_) {
      case Behavior::kRemoved:
        if (!is_match) emit(start, end);
        break;
      case Behavior::kIsolated:
        emit(start, end);
        break;
      case Behavior::kContiguous:
        // Consecutive segments of the same kind join.
        if (has_pending_ && is_match == pending_match_) {
          pending_end_ = end;
          return;
        }
        flush();
        hold(start, end, is_match);
        break;
      case Behavior::kMergedWithPrevious:
        // A match joins the segment before it, unless that one is a match too.
        if (has_pending_ && is_match && !pending_match_) {
          pending_end_ = end;
          pending_match_ = true;
          return;
        }
        flush();
        hold(start, end, is_match);
        break;
      case Behavior::kMergedWithNext:
        // A match joins the gap after it (a match after a match stays alone).
        if (has_pending_ && pending_match_ && !is_match) {
          pending_end_ = end;
          pending_match_ = false;
          flush();
          return;
        }
        flush();
        hold(start, end, is_match);
        break;
    }
  }
  void hold(std::size_t start, std::size_t end, bool is_match) {
    has_pending_ = true;
    pending_start_ = start;
    pending_end_ = end;
    pending_match_ = is_match;
  }
  void flush() {
    if (has_pending_) emit(pending_start_, pending_end_);
    has_pending_ = false;
  }
  void emit(std::size_t start, std::size_t end) {
    if (end == start) return;
    if (start == 0 && end == piece_.text.size()) {
      out_(std::move(piece_));  // the whole piece: no copy
      return;
    }
    out_(Piece{piece_.text.substr(start, end - start), piece_.at_start && start == 0});
  }

  Piece& piece_;
  Behavior behavior_;
  bool invert_;
  PieceSink& out_;
  std::size_t prev_ = 0;
  bool has_pending_ = false, pending_match_ = false;
  std::size_t pending_start_ = 0, pending_end_ = 0;
};

// Splits at every character matching `predicate` (each one its own match).
template <class Predicate>
void split_chars(Piece&& piece, Predicate predicate, Behavior behavior, PieceSink& out) {
  Splitter splitter(piece, behavior, false, out);
  const std::string_view text = piece.text;
  for (std::size_t i = 0; i < text.size();) {
    const std::size_t start = i;
    if (predicate(next_code_point(text, i))) splitter.match(start, i);
  }
  splitter.finish();
}

void split_regex(Piece&& piece, const Regex& regex, Behavior behavior, bool invert,
                 PieceSink& out) {
  Splitter splitter(piece, behavior, invert, out);
  Regex::Cursor cursor(regex, piece.text);
  std::size_t start, end;
  while (cursor.next(start, end)) splitter.match(start, end);
  splitter.finish();
}

class Split final : public PreTokenizer {
 public:
  Split(std::unique_ptr<Regex> pattern, Behavior behavior, bool invert)
      : pattern_(std::move(pattern)), behavior_(behavior), invert_(invert) {}
  void split(Piece&& piece, PieceSink& out) const override {
    split_regex(std::move(piece), *pattern_, behavior_, invert_, out);
  }

 private:
  std::unique_ptr<Regex> pattern_;
  Behavior behavior_;
  bool invert_;
};

// The pre-tokenization regex of GPT-2, used by ByteLevel when use_regex is set.
constexpr const char* kGpt2Pattern =
    R"('s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+)";

// Every byte becomes one printable character of the byte-level alphabet.
class MapBytes final : public PieceSink {
 public:
  explicit MapBytes(PieceSink& out) : out_(out) {}
  void operator()(Piece&& piece) override {
    const auto& table = byte_to_char();
    std::string mapped;
    mapped.reserve(piece.text.size() * 2);
    for (unsigned char b : piece.text) mapped.append(table[b]);
    out_(Piece{std::move(mapped), piece.at_start});
  }

 private:
  PieceSink& out_;
};

class ByteLevel final : public PreTokenizer {
 public:
  ByteLevel(bool add_prefix_space, bool use_regex, const JsonPath& at)
      : add_prefix_space_(add_prefix_space) {
    if (use_regex) regex_ = std::make_unique<Regex>(kGpt2Pattern, at.str());
  }
  void split(Piece&& piece, PieceSink& out) const override {
    if (add_prefix_space_ && (piece.text.empty() || piece.text[0] != ' ')) {
      std::string spaced;
      spaced.reserve(piece.text.size() + 1);
      spaced += ' ';
      spaced += piece.text;
      piece.text.swap(spaced);
    }
    MapBytes mapped(out);
    if (regex_) {
      split_regex(std::move(piece), *regex_, Behavior::kIsolated, false, mapped);
    } else if (!piece.text.empty()) {
      mapped(std::move(piece));
    }
  }

 private:
  bool add_prefix_space_;
  std::unique_ptr<Regex> regex_;
};

class Digits final : public PreTokenizer {
 public:
  explicit Digits(bool individual) : individual_(individual) {}
  void split(Piece&& piece, PieceSink& out) const override {
    split_chars(std::move(piece), is_numeric,
                individual_ ? Behavior::kIsolated : Behavior::kContiguous, out);
  }

 private:
  bool individual_;
};

enum class PrependScheme { kAlways, kFirst, kNever };

class Metaspace final : public PreTokenizer {
 public:
  Metaspace(std::string replacement, PrependScheme scheme, bool split)
      : replacement_(std::move(replacement)), scheme_(scheme), split_(split) {}
  void split(Piece&& piece, PieceSink& out) const override {
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
      if (!piece.text.empty()) out(std::move(piece));
      return;
    }
    Splitter splitter(piece, Behavior::kMergedWithNext, false, out);
    for (std::size_t pos = piece.text.find(replacement_); pos != std::string::npos;
         pos = piece.text.find(replacement_, pos + replacement_.size())) {
      splitter.match(pos, pos + replacement_.size());
    }
    splitter.finish();
  }

 private:
  std::string replacement_;
  PrependScheme scheme_;
  bool split_;
};

class Whitespace final : public PreTokenizer {
 public:
  explicit Whitespace(const JsonPath& at) : regex_(R"(\w+|[^\w\s]+)", at.str()) {}
  void split(Piece&& piece, PieceSink& out) const override {
    split_regex(std::move(piece), regex_, Behavior::kRemoved, true, out);
  }

 private:
  Regex regex_;
};

class WhitespaceSplit final : public PreTokenizer {
 public:
  void split(Piece&& piece, PieceSink& out) const override {
    split_chars(std::move(piece), is_whitespace, Behavior::kRemoved, out);
  }
};

class Punctuation final : public PreTokenizer {
 public:
  explicit Punctuation(Behavior behavior) : behavior_(behavior) {}
  void split(Piece&& piece, PieceSink& out) const override {
    split_chars(std::move(piece), is_punctuation, behavior_, out);
  }

 private:
  Behavior behavior_;
};

// Each piece goes through all the steps before the next one is cut (depth first).
class SequencePreTokenizer final : public PreTokenizer {
 public:
  explicit SequencePreTokenizer(std::vector<std::unique_ptr<PreTokenizer>> steps)
      : steps_(std::move(steps)) {}
  void split(Piece&& piece, PieceSink& out) const override {
    Stage first(steps_, 0, out);
    first(std::move(piece));
  }

 private:
  class Stage final : public PieceSink {
   public:
    Stage(const std::vector<std::unique_ptr<PreTokenizer>>& steps, std::size_t index,
          PieceSink& out)
        : steps_(steps), index_(index), out_(out) {}
    void operator()(Piece&& piece) override {
      if (index_ == steps_.size()) {
        out_(std::move(piece));
        return;
      }
      Stage next(steps_, index_ + 1, out_);
      steps_[index_]->split(std::move(piece), next);
    }

   private:
    const std::vector<std::unique_ptr<PreTokenizer>>& steps_;
    std::size_t index_;
    PieceSink& out_;
  };

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
