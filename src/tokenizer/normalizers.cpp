// Normalizers: NFC/NFD/NFKC/NFKD, Lowercase, StripAccents, Prepend, Replace, Strip,
// ByteLevel and Sequence.
#include <utility>

#include "tokenizer/components.h"
#include "tokenizer/regex.h"
#include "tokenizer/unicode.h"

namespace cachet::tokenizer {

namespace {

class UnicodeForm final : public Normalizer {
 public:
  explicit UnicodeForm(NormalForm form) : form_(form) {}
  void normalize(std::string& text) const override { text = normalize_unicode(text, form_); }

 private:
  NormalForm form_;
};

class Lowercase final : public Normalizer {
 public:
  void normalize(std::string& text) const override { text = to_lowercase(text); }
};

class StripAccents final : public Normalizer {
 public:
  void normalize(std::string& text) const override { text = strip_accents(text); }
};

class Prepend final : public Normalizer {
 public:
  explicit Prepend(std::string prefix) : prefix_(std::move(prefix)) {}
  // Hugging Face leaves an empty string empty.
  void normalize(std::string& text) const override {
    if (!text.empty()) text.insert(0, prefix_);
  }

 private:
  std::string prefix_;
};

class Replace final : public Normalizer {
 public:
  Replace(std::unique_ptr<Regex> pattern, std::string content)
      : pattern_(std::move(pattern)), content_(std::move(content)) {}
  void normalize(std::string& text) const override {
    std::vector<std::pair<std::size_t, std::size_t>> matches;
    pattern_->find_all(text, matches);
    if (matches.empty()) return;
    std::string out;
    out.reserve(text.size());
    std::size_t prev = 0;
    for (const auto& [start, end] : matches) {
      out.append(text, prev, start - prev);
      out.append(content_);
      prev = end;
    }
    out.append(text, prev);
    text = std::move(out);
  }

 private:
  std::unique_ptr<Regex> pattern_;
  std::string content_;
};

class Strip final : public Normalizer {
 public:
  Strip(bool left, bool right) : left_(left), right_(right) {}
  void normalize(std::string& text) const override {
    std::size_t begin = 0, end = text.size();
    if (left_) {
      while (begin < end) {
        std::size_t i = begin;
        if (!is_whitespace(next_code_point(text, i))) break;
        begin = i;
      }
    }
    if (right_) {
      while (end > begin) {
        std::size_t start = end - 1;
        while (start > begin && (static_cast<unsigned char>(text[start]) & 0xC0) == 0x80) --start;
        std::size_t i = start;
        if (!is_whitespace(next_code_point(text, i))) break;
        end = start;
      }
    }
    text = text.substr(begin, end - begin);
  }

 private:
  bool left_, right_;
};

class ByteLevelNormalizer final : public Normalizer {
 public:
  void normalize(std::string& text) const override {
    std::string out;
    out.reserve(text.size() * 2);
    for (unsigned char b : text) out.append(byte_to_char()[b]);
    text = std::move(out);
  }
};

class SequenceNormalizer final : public Normalizer {
 public:
  explicit SequenceNormalizer(std::vector<std::unique_ptr<Normalizer>> steps)
      : steps_(std::move(steps)) {}
  void normalize(std::string& text) const override {
    for (const auto& step : steps_) step->normalize(text);
  }

 private:
  std::vector<std::unique_ptr<Normalizer>> steps_;
};

}  // namespace

std::unique_ptr<Regex> make_pattern(const Json& json, const JsonPath& at) {
  if (const Json* s = optional_field(json, "String"); s != nullptr && s->is_string()) {
    return std::make_unique<Regex>(Regex::escape(s->get<std::string>()), at.str());
  }
  if (const Json* r = optional_field(json, "Regex"); r != nullptr && r->is_string()) {
    return std::make_unique<Regex>(r->get<std::string>(), at.str());
  }
  at.invalid("expected {\"String\": ...} or {\"Regex\": ...}");
}

std::unique_ptr<Normalizer> make_normalizer(const Json& json, const JsonPath& at) {
  const std::string type = type_of(json, at);
  if (type == "NFC") return std::make_unique<UnicodeForm>(NormalForm::kNfc);
  if (type == "NFD") return std::make_unique<UnicodeForm>(NormalForm::kNfd);
  if (type == "NFKC") return std::make_unique<UnicodeForm>(NormalForm::kNfkc);
  if (type == "NFKD") return std::make_unique<UnicodeForm>(NormalForm::kNfkd);
  if (type == "Lowercase") return std::make_unique<Lowercase>();
  if (type == "StripAccents") return std::make_unique<StripAccents>();
  if (type == "ByteLevel") return std::make_unique<ByteLevelNormalizer>();
  if (type == "Prepend") return std::make_unique<Prepend>(string_field(json, "prepend", at));
  if (type == "Replace") {
    return std::make_unique<Replace>(make_pattern(field(json, "pattern", at), at / "pattern"),
                                     string_field(json, "content", at));
  }
  if (type == "Strip") {
    return std::make_unique<Strip>(bool_or(json, "strip_left", true, at),
                                   bool_or(json, "strip_right", true, at));
  }
  if (type == "Sequence") {
    const Json& list = field(json, "normalizers", at);
    if (!list.is_array()) (at / "normalizers").invalid("expected an array");
    std::vector<std::unique_ptr<Normalizer>> steps;
    for (std::size_t i = 0; i < list.size(); ++i) {
      steps.push_back(make_normalizer(list[i], (at / "normalizers")[i]));
    }
    return std::make_unique<SequenceNormalizer>(std::move(steps));
  }
  (at / "type").unsupported("unsupported normalizer type '" + type + "'");
}

}  // namespace cachet::tokenizer
