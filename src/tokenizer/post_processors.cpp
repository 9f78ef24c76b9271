// Post-processors: what encode(add_special_tokens=true) adds around the ids of a single
// sequence. TemplateProcessing (Llama's "<s> $A"), BertProcessing, RobertaProcessing,
// ByteLevel (offsets only: nothing to do on ids) and Sequence.
#include <cstdint>
#include <limits>
#include <utility>

#include "tokenizer/components.h"

namespace cachet::tokenizer {

namespace {

// The ids before and after the sequence; `template` items other than the single sequence
// are special tokens, each of which may stand for several ids.
class Surround final : public PostProcessor {
 public:
  Surround(std::vector<TokenId> before, std::vector<TokenId> after)
      : before_(std::move(before)), after_(std::move(after)) {}
  void process(std::vector<TokenId>& ids, bool add_special_tokens) const override {
    if (!add_special_tokens) return;
    ids.insert(ids.begin(), before_.begin(), before_.end());
    ids.insert(ids.end(), after_.begin(), after_.end());
  }

 private:
  std::vector<TokenId> before_, after_;
};

class NoOp final : public PostProcessor {
 public:
  void process(std::vector<TokenId>&, bool) const override {}
};

class SequenceProcessor final : public PostProcessor {
 public:
  explicit SequenceProcessor(std::vector<std::unique_ptr<PostProcessor>> steps)
      : steps_(std::move(steps)) {}
  void process(std::vector<TokenId>& ids, bool add_special_tokens) const override {
    for (const auto& step : steps_) step->process(ids, add_special_tokens);
  }

 private:
  std::vector<std::unique_ptr<PostProcessor>> steps_;
};

std::unique_ptr<PostProcessor> make_template(const Json& json, const JsonPath& at) {
  const Json& single = field(json, "single", at);
  if (!single.is_array()) (at / "single").invalid("expected an array");
  const Json* specials = optional_field(json, "special_tokens");
  std::vector<TokenId> before, after;
  bool seen_sequence = false;
  for (std::size_t i = 0; i < single.size(); ++i) {
    const JsonPath item_at = (at / "single")[i];
    const Json& item = single[i];
    if (const Json* seq = optional_field(item, "Sequence")) {
      const std::string id = string_field(*seq, "id", item_at / "Sequence");
      if (id != "A") (item_at / "Sequence" / "id").unsupported("a single template uses $A only");
      if (seen_sequence) item_at.unsupported("the sequence appears twice in the template");
      seen_sequence = true;
      continue;
    }
    const Json* special = optional_field(item, "SpecialToken");
    if (special == nullptr)
      item_at.invalid("expected {\"SpecialToken\": ...} or {\"Sequence\": ...}");
    const std::string name = string_field(*special, "id", item_at / "SpecialToken");
    const Json* entry = specials != nullptr ? optional_field(*specials, name) : nullptr;
    if (entry == nullptr) (at / "special_tokens").invalid("no entry for \"" + name + "\"");
    const JsonPath entry_at = at / "special_tokens" / name;
    const Json& ids = field(*entry, "ids", entry_at);
    if (!ids.is_array()) (entry_at / "ids").invalid("expected an array");
    for (std::size_t k = 0; k < ids.size(); ++k) {
      (seen_sequence ? after : before).push_back(token_id(ids[k], (entry_at / "ids")[k]));
    }
  }
  if (!seen_sequence) (at / "single").invalid("the template has no $A");
  return std::make_unique<Surround>(std::move(before), std::move(after));
}

// BertProcessing/RobertaProcessing: "cls" and "sep" are [token, id] pairs.
TokenId pair_id(const Json& json, std::string_view key, const JsonPath& at) {
  const Json& pair = field(json, key, at);
  if (!pair.is_array() || pair.size() != 2 || !pair[1].is_number_integer()) {
    (at / key).invalid("expected [token, id]");
  }
  return token_id(pair[1], (at / key)[1]);
}

}  // namespace

std::unique_ptr<PostProcessor> make_post_processor(const Json& json, const JsonPath& at) {
  const std::string type = type_of(json, at);
  if (type == "TemplateProcessing") return make_template(json, at);
  if (type == "ByteLevel") return std::make_unique<NoOp>();
  if (type == "BertProcessing" || type == "RobertaProcessing") {
    return std::make_unique<Surround>(std::vector<TokenId>{pair_id(json, "cls", at)},
                                      std::vector<TokenId>{pair_id(json, "sep", at)});
  }
  if (type == "Sequence") {
    const Json& list = field(json, "processors", at);
    if (!list.is_array()) (at / "processors").invalid("expected an array");
    std::vector<std::unique_ptr<PostProcessor>> steps;
    for (std::size_t i = 0; i < list.size(); ++i) {
      steps.push_back(make_post_processor(list[i], (at / "processors")[i]));
    }
    return std::make_unique<SequenceProcessor>(std::move(steps));
  }
  (at / "type").unsupported("unsupported post-processor type '" + type + "'");
}

}  // namespace cachet::tokenizer
