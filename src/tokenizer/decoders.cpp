// Decoders: turn the token strings of ids back into text. ByteLevel, ByteFallback, Fuse,
// Strip, Replace, Metaspace, BPEDecoder and Sequence, each rewriting the list of token
// strings the way `tokenizers`' decode_chain does (some per token, some across tokens).
#include <utility>

#include "tokenizer/components.h"
#include "tokenizer/regex.h"
#include "tokenizer/unicode.h"

namespace cachet::tokenizer {

namespace {

constexpr std::string_view kReplacementChar = "\xEF\xBF\xBD";

// All tokens become one string of bytes; characters outside the byte-level alphabet make
// their token pass through as raw UTF-8 (added tokens such as "<think>\n").
class ByteLevelDecoder final : public Decoder {
 public:
  void decode_chain(std::vector<std::string>& tokens) const override {
    std::string bytes;
    for (const std::string& token : tokens) {
      const std::size_t mark = bytes.size();
      bool mapped = true;
      for (std::size_t i = 0; i < token.size();) {
        const int b = char_to_byte(next_code_point(token, i));
        if (b < 0) {
          mapped = false;
          break;
        }
        bytes.push_back(static_cast<char>(b));
      }
      if (!mapped) {
        bytes.resize(mark);
        bytes.append(token);
      }
    }
    tokens.assign(1, is_valid_utf8(bytes) ? std::move(bytes) : to_valid_utf8(bytes));
  }
};

int hex_value(char c) {
  if (c >= '0' && c <= '9') return c - '0';
  if (c >= 'a' && c <= 'f') return c - 'a' + 10;
  if (c >= 'A' && c <= 'F') return c - 'A' + 10;
  return -1;
}

// Runs of <0xNN> tokens become the text of their bytes, or one U+FFFD per byte when the
// run is not valid UTF-8.
class ByteFallbackDecoder final : public Decoder {
 public:
  void decode_chain(std::vector<std::string>& tokens) const override {
    std::vector<std::string> out;
    out.reserve(tokens.size());
    std::string run;
    std::size_t run_length = 0;
    auto flush = [&] {
      if (run_length == 0) return;
      if (is_valid_utf8(run)) {
        out.push_back(run);
      } else {
        for (std::size_t k = 0; k < run_length; ++k) out.emplace_back(kReplacementChar);
      }
      run.clear();
      run_length = 0;
    };
    for (std::string& token : tokens) {
      if (token.size() == 6 && token.compare(0, 3, "<0x") == 0 && token[5] == '>' &&
          hex_value(token[3]) >= 0 && hex_value(token[4]) >= 0) {
        run.push_back(static_cast<char>(hex_value(token[3]) * 16 + hex_value(token[4])));
        ++run_length;
        continue;
      }
      flush();
      out.push_back(std::move(token));
    }
    flush();
    tokens = std::move(out);
  }
};

class Fuse final : public Decoder {
 public:
  void decode_chain(std::vector<std::string>& tokens) const override {
    std::string all;
    for (const std::string& token : tokens) all += token;
    tokens.assign(1, std::move(all));
  }
};

// Removes up to `start` leading and `stop` trailing `content` characters of each token.
class Strip final : public Decoder {
 public:
  Strip(char32_t content, std::size_t start, std::size_t stop)
      : content_(content), start_(start), stop_(stop) {}
  void decode_chain(std::vector<std::string>& tokens) const override {
    for (std::string& token : tokens) {
      std::vector<std::size_t> bounds;  // byte offset of each character, then the size
      for (std::size_t i = 0; i < token.size();) {
        bounds.push_back(i);
        next_code_point(token, i);
      }
      const std::size_t count = bounds.size();
      bounds.push_back(token.size());
      auto char_at = [&](std::size_t k) {
        std::size_t i = bounds[k];
        return next_code_point(token, i);
      };
      std::size_t begin = 0;
      while (begin < std::min(start_, count) && char_at(begin) == content_) ++begin;
      std::size_t end = count;
      for (std::size_t k = 0; k < stop_ && end > 0 && char_at(end - 1) == content_; ++k) --end;
      token = end > begin ? token.substr(bounds[begin], bounds[end] - bounds[begin]) : "";
    }
  }

 private:
  char32_t content_;
  std::size_t start_, stop_;
};

class ReplaceDecoder final : public Decoder {
 public:
  ReplaceDecoder(std::unique_ptr<Regex> pattern, std::string content)
      : pattern_(std::move(pattern)), content_(std::move(content)) {}
  void decode_chain(std::vector<std::string>& tokens) const override {
    std::vector<std::pair<std::size_t, std::size_t>> matches;
    for (std::string& token : tokens) {
      matches.clear();
      pattern_->find_all(token, matches);
      if (matches.empty()) continue;
      std::string out;
      std::size_t prev = 0;
      for (const auto& [start, end] : matches) {
        out.append(token, prev, start - prev);
        out.append(content_);
        prev = end;
      }
      out.append(token, prev);
      token = std::move(out);
    }
  }

 private:
  std::unique_ptr<Regex> pattern_;
  std::string content_;
};

// The replacement character becomes a space, except in the first token where (unless the
// prepend scheme is "never") it is dropped: it stands for the space Metaspace prepended.
class MetaspaceDecoder final : public Decoder {
 public:
  MetaspaceDecoder(std::string replacement, bool strip_first)
      : replacement_(std::move(replacement)), strip_first_(strip_first) {}
  void decode_chain(std::vector<std::string>& tokens) const override {
    for (std::size_t t = 0; t < tokens.size(); ++t) {
      std::string& token = tokens[t];
      if (token.find(replacement_) == std::string::npos) continue;
      const std::string_view with = t == 0 && strip_first_ ? "" : " ";
      std::string out;
      std::size_t prev = 0;
      for (std::size_t pos = token.find(replacement_); pos != std::string::npos;
           pos = token.find(replacement_, prev)) {
        out.append(token, prev, pos - prev);
        out.append(with);
        prev = pos + replacement_.size();
      }
      out.append(token, prev);
      token = std::move(out);
    }
  }

 private:
  std::string replacement_;
  bool strip_first_;
};

// The BPE end-of-word suffix becomes a space (nothing in the last token).
class BpeSuffixDecoder final : public Decoder {
 public:
  explicit BpeSuffixDecoder(std::string suffix) : suffix_(std::move(suffix)) {}
  void decode_chain(std::vector<std::string>& tokens) const override {
    if (suffix_.empty()) return;
    for (std::size_t t = 0; t < tokens.size(); ++t) {
      const std::string& token = tokens[t];
      const std::string_view with = t + 1 == tokens.size() ? "" : " ";
      std::string out;
      std::size_t prev = 0;
      for (std::size_t pos = token.find(suffix_); pos != std::string::npos;
           pos = token.find(suffix_, prev)) {
        out.append(token, prev, pos - prev);
        out.append(with);
        prev = pos + suffix_.size();
      }
      out.append(token, prev);
      tokens[t] = std::move(out);
    }
  }

 private:
  std::string suffix_;
};

class SequenceDecoder final : public Decoder {
 public:
  explicit SequenceDecoder(std::vector<std::unique_ptr<Decoder>> steps)
      : steps_(std::move(steps)) {}
  void decode_chain(std::vector<std::string>& tokens) const override {
    for (const auto& step : steps_) step->decode_chain(tokens);
  }

 private:
  std::vector<std::unique_ptr<Decoder>> steps_;
};

char32_t single_char(const std::string& s, const JsonPath& at) {
  std::size_t i = 0;
  if (s.empty() || !is_valid_utf8(s)) at.invalid("expected one character");
  const char32_t c = next_code_point(s, i);
  if (i != s.size()) at.invalid("expected one character");
  return c;
}

std::size_t count_field(const Json& json, std::string_view key, const JsonPath& at) {
  const long long n = int_field(json, key, at);
  if (n < 0) (at / key).invalid("expected a non-negative integer");
  return static_cast<std::size_t>(n);
}

}  // namespace

std::unique_ptr<Decoder> make_decoder(const Json& json, const JsonPath& at) {
  const std::string type = type_of(json, at);
  if (type == "ByteLevel") return std::make_unique<ByteLevelDecoder>();
  if (type == "ByteFallback") return std::make_unique<ByteFallbackDecoder>();
  if (type == "Fuse") return std::make_unique<Fuse>();
  if (type == "Strip") {
    return std::make_unique<Strip>(single_char(string_field(json, "content", at), at / "content"),
                                   count_field(json, "start", at), count_field(json, "stop", at));
  }
  if (type == "Replace") {
    return std::make_unique<ReplaceDecoder>(
        make_pattern(field(json, "pattern", at), at / "pattern"),
        string_field(json, "content", at));
  }
  if (type == "Metaspace") {
    bool strip_first = bool_or(json, "add_prefix_space", true, at);
    if (const Json* scheme = optional_field(json, "prepend_scheme")) {
      strip_first = !(scheme->is_string() && scheme->get<std::string>() == "never");
    }
    std::string replacement = string_or(json, "replacement", "\xE2\x96\x81", at);
    // Searching for "" would find it at the same place forever.
    if (replacement.empty()) (at / "replacement").invalid("empty replacement");
    return std::make_unique<MetaspaceDecoder>(std::move(replacement), strip_first);
  }
  if (type == "BPEDecoder") {
    return std::make_unique<BpeSuffixDecoder>(string_or(json, "suffix", "</w>", at));
  }
  if (type == "Sequence") {
    const Json& list = field(json, "decoders", at);
    if (!list.is_array()) (at / "decoders").invalid("expected an array");
    std::vector<std::unique_ptr<Decoder>> steps;
    for (std::size_t i = 0; i < list.size(); ++i) {
      steps.push_back(make_decoder(list[i], (at / "decoders")[i]));
    }
    return std::make_unique<SequenceDecoder>(std::move(steps));
  }
  (at / "type").unsupported("unsupported decoder type '" + type + "'");
}

}  // namespace cachet::tokenizer
