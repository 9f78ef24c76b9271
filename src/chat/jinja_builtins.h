// What Jinja2 (as Hugging Face configures it for chat templates) gives a template beyond its
// syntax: attribute and item access (with Python's str, dict and list methods), the filters,
// the tests, and Python's operators on values. Errors are TemplateError with Python's or
// Jinja2's wording where a template author would recognize it.
#pragma once

#include <string>
#include <string_view>

#include "chat/jinja_value.h"

namespace cachet::chat {

// A call's argument `index` (positional) or `name` (keyword); null when not given.
inline const Value* arg(const CallArgs& a, std::size_t index, std::string_view name) {
  if (index < a.positional.size()) return &a.positional[index];
  for (const auto& [k, v] : a.keyword)
    if (k == name) return &v;
  return nullptr;
}

inline Value arg_or(const CallArgs& a, std::size_t index, std::string_view name, Value fallback) {
  const Value* v = arg(a, index, name);
  return v ? *v : std::move(fallback);
}

// obj.name: a dict's key (or its method of that name: items, keys, values, get), a string's
// or list's method, a namespace's attribute; undefined when absent. An undefined `obj`
// raises ("'x' is undefined").
Value get_attr(const Value& obj, const std::string& name);
// obj[key]: a dict's key, a list's or string's index (negative from the end); undefined
// when absent or out of range.
Value get_item(const Value& obj, const Value& key);
// obj[start:stop:step] with Python's semantics (null parts: omitted, as undefined values).
Value get_slice(const Value& obj, const Value& start, const Value& stop, const Value& step);

// `subject | name(args)`.
Value apply_filter(const std::string& name, const Value& subject, const CallArgs& args);
// `subject is name(args)`.
bool apply_test(const std::string& name, const Value& subject, const CallArgs& args);

// a op b for + - * / // % ** ~ == != < <= > >= in, "not in".
Value binary_op(const std::string& op, const Value& a, const Value& b);
// The items a for loop goes over: a list's, a dict's keys, a string's characters; none for
// undefined. Anything else raises.
List iterate(const Value& v);

}  // namespace cachet::chat
