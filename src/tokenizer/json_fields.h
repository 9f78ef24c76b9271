// Reading tokenizer.json fields with errors that name the file and the field.
#pragma once

#include <cstdint>
#include <nlohmann/json.hpp>
#include <string>
#include <string_view>

#include "cachet/errors.h"

namespace cachet::tokenizer {

using Json = nlohmann::json;

// A position in a JSON file: "tokenizer.json" + "pre_tokenizer.pretokenizers[1].pattern".
struct JsonPath {
  std::string file;
  std::string path;

  JsonPath operator/(std::string_view key) const {
    return {file, path.empty() ? std::string(key) : path + "." + std::string(key)};
  }
  JsonPath operator[](std::size_t index) const {
    return {file, path + "[" + std::to_string(index) + "]"};
  }
  std::string str() const { return file + ": " + (path.empty() ? "<root>" : path); }

  [[noreturn]] void invalid(std::string_view what) const {
    throw Error(ErrorCode::kInvalidModel, str() + ": " + std::string(what));
  }
  [[noreturn]] void unsupported(std::string_view what) const {
    throw Error(ErrorCode::kUnsupported, str() + ": " + std::string(what));
  }
};

// obj[key], which must exist (null counts as present).
inline const Json& field(const Json& obj, std::string_view key, const JsonPath& at) {
  if (!obj.is_object()) at.invalid("expected an object");
  const auto it = obj.find(key);
  if (it == obj.end()) (at / key).invalid("missing field");
  return *it;
}

inline const Json* optional_field(const Json& obj, std::string_view key) {
  if (!obj.is_object()) return nullptr;
  const auto it = obj.find(key);
  return it == obj.end() || it->is_null() ? nullptr : &*it;
}

inline std::string string_field(const Json& obj, std::string_view key, const JsonPath& at) {
  const Json& v = field(obj, key, at);
  if (!v.is_string()) (at / key).invalid("expected a string");
  return v.get<std::string>();
}

inline std::string string_or(const Json& obj, std::string_view key, std::string fallback,
                             const JsonPath& at) {
  const Json* v = optional_field(obj, key);
  if (v == nullptr) return fallback;
  if (!v->is_string()) (at / key).invalid("expected a string");
  return v->get<std::string>();
}

inline bool bool_or(const Json& obj, std::string_view key, bool fallback, const JsonPath& at) {
  const Json* v = optional_field(obj, key);
  if (v == nullptr) return fallback;
  if (!v->is_boolean()) (at / key).invalid("expected a boolean");
  return v->get<bool>();
}

inline long long int_field(const Json& obj, std::string_view key, const JsonPath& at) {
  const Json& v = field(obj, key, at);
  if (!v.is_number_integer()) (at / key).invalid("expected an integer");
  return v.get<long long>();
}

// A token id: an integer in [0, 2^31). Anything else would be truncated to some other id.
inline std::int32_t token_id(const Json& v, const JsonPath& at) {
  if (!v.is_number_integer()) at.invalid("expected an integer token id");
  if (v.is_number_unsigned() ? v.get<std::uint64_t>() > INT32_MAX
                             : (v.get<std::int64_t>() < 0 || v.get<std::int64_t>() > INT32_MAX)) {
    at.invalid("token id " + v.dump() + " is outside [0, 2147483647]");
  }
  return v.get<std::int32_t>();
}

// The "type" of a component object.
inline std::string type_of(const Json& obj, const JsonPath& at) {
  return string_field(obj, "type", at);
}

}  // namespace cachet::tokenizer
