#include "model/model_config.h"

#include <fmt/format.h>

#include <cmath>
#include <fstream>
#include <limits>
#include <nlohmann/json.hpp>
#include <sstream>
#include <string_view>

#include "cachet/errors.h"
#include "util/json_depth.h"

namespace cachet::model {
namespace {

using Json = nlohmann::json;

// The model families config.json can name. Mistral (without a sliding window) computes the
// same function as Llama, so it loads as Arch::kLlama, but its defaults differ.
enum class Family { kLlama, kQwen2, kQwen3, kMistral };

constexpr std::string_view kSupportedArchitectures =
    "LlamaForCausalLM, Qwen2ForCausalLM, Qwen3ForCausalLM, MistralForCausalLM";

std::optional<Family> family_from_architecture(std::string_view name) {
  if (name == "LlamaForCausalLM") return Family::kLlama;
  if (name == "Qwen2ForCausalLM") return Family::kQwen2;
  if (name == "Qwen3ForCausalLM") return Family::kQwen3;
  if (name == "MistralForCausalLM") return Family::kMistral;
  return std::nullopt;
}

std::optional<Family> family_from_model_type(std::string_view name) {
  if (name == "llama") return Family::kLlama;
  if (name == "qwen2") return Family::kQwen2;
  if (name == "qwen3") return Family::kQwen3;
  if (name == "mistral") return Family::kMistral;
  return std::nullopt;
}

Arch arch_of(Family family) {
  switch (family) {
    case Family::kQwen2:
      return Arch::kQwen2;
    case Family::kQwen3:
      return Arch::kQwen3;
    case Family::kLlama:
    case Family::kMistral:
      return Arch::kLlama;
  }
  return Arch::kLlama;
}

// What a JSON value is, for "expected X, got Y" messages.
std::string describe(const Json& value) {
  switch (value.type()) {
    case Json::value_t::null:
      return "null";
    case Json::value_t::boolean:
      return fmt::format("boolean {}", value.dump());
    case Json::value_t::string: {
      std::string text = value.get<std::string>();
      if (text.size() > 40) text = text.substr(0, 40) + "...";
      return fmt::format("string \"{}\"", text);
    }
    case Json::value_t::number_integer:
    case Json::value_t::number_unsigned:
      return fmt::format("integer {}", value.dump());
    case Json::value_t::number_float:
      return fmt::format("number {}", value.dump());
    case Json::value_t::array:
      return "an array";
    case Json::value_t::object:
      return "an object";
    default:
      return "an unexpected JSON value";
  }
}

// Typed access to the fields of one JSON object; `prefix` names nested objects in messages
// ("rope_scaling." for the fields of rope_scaling). A null field counts as absent, as it
// does for the Python constructors of the transformers configs.
class FieldReader {
 public:
  FieldReader(const Json& object, const std::string& origin, std::string prefix = "")
      : object_(object), origin_(origin), prefix_(std::move(prefix)) {}

  std::string field_name(std::string_view key) const { return prefix_ + std::string(key); }

  [[noreturn]] void fail(ErrorCode code, std::string_view key, const std::string& what) const {
    throw Error(code, fmt::format("{}: field '{}' {}", origin_, field_name(key), what));
  }

  bool has(std::string_view key) const { return object_.contains(key); }

  const Json* get(std::string_view key) const {
    auto it = object_.find(key);
    if (it == object_.end() || it->is_null()) return nullptr;
    return &*it;
  }

  std::int64_t integer(std::string_view key, const Json& value, std::int64_t min, std::int64_t max,
                       std::string_view expected) const {
    bool ok = false;
    std::int64_t result = 0;
    if (value.is_number_unsigned()) {
      auto u = value.get<std::uint64_t>();
      ok = u <= static_cast<std::uint64_t>(max);
      result = static_cast<std::int64_t>(u);
    } else if (value.is_number_integer()) {
      result = value.get<std::int64_t>();
      ok = true;
    }
    if (!ok || result < min || result > max) {
      fail(ErrorCode::kInvalidModel, key,
           fmt::format("must be {} (got {})", expected, describe(value)));
    }
    return result;
  }

  std::optional<std::int64_t> optional_int(std::string_view key, std::int64_t min, std::int64_t max,
                                           std::string_view expected) const {
    const Json* value = get(key);
    if (value == nullptr) return std::nullopt;
    return integer(key, *value, min, max, expected);
  }

  std::optional<std::int32_t> optional_positive_int32(std::string_view key) const {
    auto value =
        optional_int(key, 1, std::numeric_limits<std::int32_t>::max(), "a positive 32-bit integer");
    if (!value) return std::nullopt;
    return static_cast<std::int32_t>(*value);
  }

  std::int32_t required_positive_int32(std::string_view key) const {
    auto value = optional_positive_int32(key);
    if (!value) fail(ErrorCode::kInvalidModel, key, "is missing (expected a positive integer)");
    return *value;
  }

  std::optional<double> optional_positive_number(std::string_view key) const {
    const Json* value = get(key);
    if (value == nullptr) return std::nullopt;
    if (value->is_number()) {
      double d = value->get<double>();
      if (std::isfinite(d) && d > 0) return d;
    }
    fail(ErrorCode::kInvalidModel, key,
         fmt::format("must be a positive number (got {})", describe(*value)));
  }

  std::optional<bool> optional_bool(std::string_view key) const {
    const Json* value = get(key);
    if (value == nullptr) return std::nullopt;
    if (!value->is_boolean()) {
      fail(ErrorCode::kInvalidModel, key,
           fmt::format("must be true or false (got {})", describe(*value)));
    }
    return value->get<bool>();
  }

  std::optional<std::string> optional_string(std::string_view key) const {
    const Json* value = get(key);
    if (value == nullptr) return std::nullopt;
    if (!value->is_string()) {
      fail(ErrorCode::kInvalidModel, key,
           fmt::format("must be a string (got {})", describe(*value)));
    }
    return value->get<std::string>();
  }

  const Json* optional_object(std::string_view key) const {
    const Json* value = get(key);
    if (value != nullptr && !value->is_object()) {
      fail(ErrorCode::kInvalidModel, key,
           fmt::format("must be an object or null (got {})", describe(*value)));
    }
    return value;
  }

  const std::string& origin() const { return origin_; }

 private:
  const Json& object_;
  const std::string& origin_;
  std::string prefix_;
};

// architectures[0] decides; model_type is the fallback, and must agree when both are known
// (transformers picks the config class by model_type and the model class by architectures).
Family parse_family(const FieldReader& r) {
  std::optional<std::string> model_type = r.optional_string("model_type");
  std::optional<Family> from_type;
  if (model_type) from_type = family_from_model_type(*model_type);

  const Json* architectures = r.get("architectures");
  if (architectures != nullptr) {
    if (!architectures->is_array()) {
      r.fail(ErrorCode::kInvalidModel, "architectures",
             fmt::format("must be a list of strings (got {})", describe(*architectures)));
    }
    if (!architectures->empty()) {
      const Json& first = architectures->front();
      if (!first.is_string()) {
        r.fail(ErrorCode::kInvalidModel, "architectures",
               fmt::format("must be a list of strings (got {} as its first element)",
                           describe(first)));
      }
      const auto name = first.get<std::string>();
      std::optional<Family> family = family_from_architecture(name);
      if (!family) {
        r.fail(ErrorCode::kUnsupported, "architectures",
               fmt::format("names '{}', which cachet does not support (supported: {})", name,
                           kSupportedArchitectures));
      }
      if (from_type && *from_type != *family) {
        r.fail(
            ErrorCode::kInvalidModel, "model_type",
            fmt::format("is '{}', which does not match architectures[0] '{}'", *model_type, name));
      }
      return *family;
    }
  }
  if (!model_type) {
    throw Error(ErrorCode::kInvalidModel,
                fmt::format("{}: neither field 'architectures' nor field 'model_type' names the "
                            "architecture (expected one of {})",
                            r.origin(), kSupportedArchitectures));
  }
  if (!from_type) {
    r.fail(ErrorCode::kUnsupported, "model_type",
           fmt::format("is '{}', which cachet does not support (supported: llama, qwen2, qwen3, "
                       "mistral)",
                       *model_type));
  }
  return *from_type;
}

void parse_attention_shape(const FieldReader& r, Family family, ModelConfig& c) {
  c.num_kv_heads = r.optional_positive_int32("num_key_value_heads").value_or(c.num_heads);
  if (c.num_heads % c.num_kv_heads != 0) {
    r.fail(ErrorCode::kInvalidModel, "num_key_value_heads",
           fmt::format("must divide 'num_attention_heads' (got {} and {})", c.num_kv_heads,
                       c.num_heads));
  }
  std::optional<std::int32_t> head_dim = r.optional_positive_int32("head_dim");
  const bool divisible = c.hidden_size % c.num_heads == 0;
  if (head_dim) {
    // Older transformers ignore head_dim for Qwen2 and use hidden_size / num_attention_heads;
    // accept it only where every version computes the same model.
    if (family == Family::kQwen2 && (!divisible || *head_dim != c.hidden_size / c.num_heads)) {
      r.fail(ErrorCode::kUnsupported, "head_dim",
             fmt::format("is {}, but Qwen2 requires hidden_size / num_attention_heads ({} / {})",
                         *head_dim, c.hidden_size, c.num_heads));
    }
    c.head_dim = *head_dim;
  } else if (family == Family::kQwen3) {
    c.head_dim = 128;  // Qwen3Config's default, not hidden_size / num_attention_heads
  } else {
    if (!divisible) {
      r.fail(ErrorCode::kInvalidModel, "hidden_size",
             fmt::format("must be divisible by 'num_attention_heads' when 'head_dim' is absent "
                         "(got {} and {})",
                         c.hidden_size, c.num_heads));
    }
    c.head_dim = c.hidden_size / c.num_heads;
  }
  if (c.head_dim % 2 != 0) {
    r.fail(
        ErrorCode::kInvalidModel, head_dim ? "head_dim" : "hidden_size",
        fmt::format("gives head_dim {}, but rotary embeddings need an even head_dim", c.head_dim));
  }
}

std::optional<Llama3RopeScaling> parse_rope_scaling_object(const FieldReader& parent,
                                                           std::string_view key, const Json& object,
                                                           bool type_required) {
  const FieldReader r(object, parent.origin(), parent.field_name(key) + ".");
  std::optional<std::string> rope_type = r.optional_string("rope_type");
  std::optional<std::string> legacy_type = r.optional_string("type");
  std::string_view type_key = "rope_type";
  if (legacy_type) {
    if (rope_type && *rope_type != *legacy_type) {
      r.fail(
          ErrorCode::kInvalidModel, "rope_type",
          fmt::format("is '{}' but '{}' is '{}'", *rope_type, r.field_name("type"), *legacy_type));
    }
    if (!rope_type) type_key = "type";
    rope_type = legacy_type;
  }
  if (!rope_type) {
    if (type_required) {
      r.fail(ErrorCode::kInvalidModel, "rope_type",
             "is missing (expected \"llama3\" or \"default\")");
    }
    return std::nullopt;
  }
  if (*rope_type == "default") return std::nullopt;
  if (*rope_type != "llama3") {
    r.fail(ErrorCode::kUnsupported, type_key,
           fmt::format("is '{}', which cachet does not support (supported: llama3, default)",
                       *rope_type));
  }
  auto required_number = [&](std::string_view name) {
    std::optional<double> value = r.optional_positive_number(name);
    if (!value)
      r.fail(ErrorCode::kInvalidModel, name, "is missing (required for rope_type llama3)");
    return *value;
  };
  Llama3RopeScaling s;
  s.factor = required_number("factor");
  s.low_freq_factor = required_number("low_freq_factor");
  s.high_freq_factor = required_number("high_freq_factor");
  std::optional<std::int64_t> original =
      r.optional_int("original_max_position_embeddings", 1,
                     std::numeric_limits<std::int64_t>::max(), "a positive integer");
  if (!original) {
    r.fail(ErrorCode::kInvalidModel, "original_max_position_embeddings",
           "is missing (required for rope_type llama3)");
  }
  s.original_max_position_embeddings = *original;
  if (!(s.high_freq_factor > s.low_freq_factor)) {
    r.fail(ErrorCode::kInvalidModel, "high_freq_factor",
           fmt::format("must be greater than '{}' (got {} and {})", r.field_name("low_freq_factor"),
                       s.high_freq_factor, s.low_freq_factor));
  }
  return s;
}

// rope_theta and rope_scaling at the top level (transformers 4.x), or both inside
// rope_parameters (transformers 5).
void parse_rope(const FieldReader& r, ModelConfig& c) {
  const Json* parameters = r.optional_object("rope_parameters");
  std::optional<double> theta = r.optional_positive_number("rope_theta");
  if (parameters != nullptr) {
    const FieldReader p(*parameters, r.origin(), "rope_parameters.");
    std::optional<double> inner = p.optional_positive_number("rope_theta");
    if (inner && theta && *inner != *theta) {
      r.fail(ErrorCode::kInvalidModel, "rope_theta",
             fmt::format("is {} but 'rope_parameters.rope_theta' is {}", *theta, *inner));
    }
    if (!theta) theta = inner;
  }
  c.rope_theta = theta.value_or(10000.0);

  if (const Json* scaling = r.optional_object("rope_scaling")) {
    c.rope_scaling = parse_rope_scaling_object(r, "rope_scaling", *scaling, true);
  } else if (parameters != nullptr) {
    c.rope_scaling = parse_rope_scaling_object(r, "rope_parameters", *parameters, false);
  }
}

// Features of the transformers models that cachet does not implement.
void reject_unsupported(const FieldReader& r, Family family) {
  if (std::optional<std::string> act = r.optional_string("hidden_act")) {
    // transformers maps "swish" to the same SiLU module.
    if (*act != "silu" && *act != "swish") {
      r.fail(ErrorCode::kUnsupported, "hidden_act",
             fmt::format("is '{}', but cachet only supports \"silu\"", *act));
    }
  }
  if (r.optional_bool("mlp_bias").value_or(false)) {
    r.fail(ErrorCode::kUnsupported, "mlp_bias", "is true, but cachet has no MLP biases");
  }
  if (family == Family::kQwen2 || family == Family::kQwen3) {
    if (r.optional_bool("use_sliding_window").value_or(false)) {
      r.fail(ErrorCode::kUnsupported, "use_sliding_window",
             "is true, but cachet does not implement sliding-window attention");
    }
  }
  if (family == Family::kMistral) {
    // MistralConfig defaults sliding_window to 4096, so only an explicit null turns it off.
    if (!r.has("sliding_window")) {
      r.fail(ErrorCode::kUnsupported, "sliding_window",
             "is absent, which for MistralForCausalLM means a 4096-token sliding window; cachet "
             "only supports \"sliding_window\": null");
    }
    if (const Json* window = r.get("sliding_window")) {
      r.fail(ErrorCode::kUnsupported, "sliding_window",
             fmt::format("is {}, but cachet does not implement sliding-window attention (only "
                         "null is supported)",
                         describe(*window)));
    }
    // Mistral's attention has no biases whatever the field says; refuse rather than guess.
    if (r.optional_bool("attention_bias").value_or(false)) {
      r.fail(ErrorCode::kUnsupported, "attention_bias",
             "is true, which MistralForCausalLM ignores");
    }
  }
  if (family == Family::kLlama || family == Family::kQwen3) {
    // Llama and Qwen3 put the bias on o_proj too, which cachet's layers do not have.
    if (r.optional_bool("attention_bias").value_or(false)) {
      r.fail(ErrorCode::kUnsupported, "attention_bias",
             "is true, but cachet does not support attention biases (o_proj.bias) for this "
             "architecture");
    }
  }
}

std::int32_t default_max_position_embeddings(Family family) {
  switch (family) {
    case Family::kLlama:
      return 2048;
    case Family::kQwen2:
    case Family::kQwen3:
      return 32768;
    case Family::kMistral:
      return 4096 * 32;
  }
  return 2048;
}

// A token of the model: an id outside the vocabulary could never be generated (an EOS id
// that never ends a request).
std::int32_t parse_token_id(const FieldReader& r, std::string_view key, const Json& value,
                            std::int32_t vocab_size) {
  return static_cast<std::int32_t>(
      r.integer(key, value, 0, vocab_size - 1,
                fmt::format("a token id in [0, {}) (the vocab_size)", vocab_size)));
}

void parse_special_tokens(const FieldReader& r, ModelConfig& c) {
  if (const Json* bos = r.get("bos_token_id"))
    c.bos_token_id = parse_token_id(r, "bos_token_id", *bos, c.vocab_size);
  if (const Json* eos = r.get("eos_token_id")) {
    if (eos->is_array()) {
      for (const Json& id : *eos)
        c.eos_token_ids.push_back(parse_token_id(r, "eos_token_id", id, c.vocab_size));
    } else {
      c.eos_token_ids.push_back(parse_token_id(r, "eos_token_id", *eos, c.vocab_size));
    }
  }
}

// Informational only: an unknown or mistyped value is ignored rather than rejected.
std::optional<DType> parse_torch_dtype(const FieldReader& r) {
  for (std::string_view key : {"dtype", "torch_dtype"}) {
    const Json* value = r.get(key);
    if (value == nullptr || !value->is_string()) continue;
    const auto& name = value->get_ref<const std::string&>();
    if (name == "float32") return DType::kF32;
    if (name == "float16") return DType::kF16;
    if (name == "bfloat16") return DType::kBF16;
    return std::nullopt;
  }
  return std::nullopt;
}

}  // namespace

std::string_view arch_name(Arch arch) {
  switch (arch) {
    case Arch::kLlama:
      return "LlamaForCausalLM";
    case Arch::kQwen2:
      return "Qwen2ForCausalLM";
    case Arch::kQwen3:
      return "Qwen3ForCausalLM";
  }
  return "?";
}

std::string_view arch_model_type(Arch arch) {
  switch (arch) {
    case Arch::kLlama:
      return "llama";
    case Arch::kQwen2:
      return "qwen2";
    case Arch::kQwen3:
      return "qwen3";
  }
  return "?";
}

ModelConfig parse_model_config(std::string_view json_text, const std::string& origin) {
  if (util::json_nests_too_deep(json_text)) {
    throw Error(ErrorCode::kInvalidModel,
                fmt::format("{}: JSON nested deeper than {} levels", origin, util::kMaxJsonDepth));
  }
  Json root;
  try {
    root = Json::parse(json_text);
  } catch (const Json::exception& e) {
    throw Error(ErrorCode::kInvalidModel, fmt::format("{}: not valid JSON: {}", origin, e.what()));
  }
  if (!root.is_object()) {
    throw Error(ErrorCode::kInvalidModel,
                fmt::format("{}: expected a JSON object at the top level, found {}", origin,
                            describe(root)));
  }
  const FieldReader r(root, origin);
  const Family family = parse_family(r);
  reject_unsupported(r, family);

  ModelConfig c;
  c.arch = arch_of(family);
  c.hidden_size = r.required_positive_int32("hidden_size");
  c.intermediate_size = r.required_positive_int32("intermediate_size");
  c.num_heads = r.required_positive_int32("num_attention_heads");
  c.num_layers = r.required_positive_int32("num_hidden_layers");
  c.vocab_size = r.required_positive_int32("vocab_size");
  parse_attention_shape(r, family, c);
  c.max_position_embeddings = r.optional_positive_int32("max_position_embeddings")
                                  .value_or(default_max_position_embeddings(family));
  c.rms_norm_eps = r.optional_positive_number("rms_norm_eps").value_or(1e-6);
  // The backends compute in float; an epsilon of 1 or more swamps the activations it guards
  // (and one past FLT_MAX does not even convert).
  if (c.rms_norm_eps >= 1.0) {
    r.fail(ErrorCode::kInvalidModel, "rms_norm_eps",
           fmt::format("must be a positive number below 1 (got {})", c.rms_norm_eps));
  }
  parse_rope(r, c);
  c.tie_word_embeddings = r.optional_bool("tie_word_embeddings").value_or(false);
  // Qwen2's q/k/v projections always carry biases; its config has no switch for them.
  c.attention_bias = family == Family::kQwen2;
  c.qk_norm = family == Family::kQwen3;
  parse_special_tokens(r, c);
  c.torch_dtype = parse_torch_dtype(r);
  return c;
}

ModelConfig load_model_config(const std::filesystem::path& config_json) {
  std::error_code ec;
  if (!std::filesystem::exists(config_json, ec)) {
    throw Error(ErrorCode::kNotFound, fmt::format("{}: no such file", config_json.string()));
  }
  if (std::filesystem::is_directory(config_json, ec)) {
    throw Error(
        ErrorCode::kInvalidModel,
        fmt::format("{}: is a directory, expected a config.json file", config_json.string()));
  }
  if (!std::filesystem::is_regular_file(config_json, ec)) {
    // A FIFO or a device: reading it could block forever or never end.
    throw Error(ErrorCode::kInvalidModel,
                fmt::format("{}: not a regular file", config_json.string()));
  }
  std::ifstream in(config_json, std::ios::binary);
  if (!in.is_open()) {
    throw Error(ErrorCode::kInvalidModel,
                fmt::format("{}: cannot be opened", config_json.string()));
  }
  std::ostringstream text;
  text << in.rdbuf();
  return parse_model_config(text.str(), config_json.string());
}

}  // namespace cachet::model
