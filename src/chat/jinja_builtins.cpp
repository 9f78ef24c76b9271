#include "chat/jinja_builtins.h"

#include <fmt/format.h>

#include <algorithm>
#include <cmath>

#include "chat/jinja_strings.h"

namespace cachet::chat {
namespace {

[[noreturn]] void type_error(const std::string& what) { throw TemplateError(what); }

// An undefined value used where a value is needed: Jinja2's UndefinedError.
[[noreturn]] void undefined_error(const Value& v) {
  throw TemplateError(v.name().empty() ? "a value is undefined" : v.name());
}

std::string need_string(const Value& v, const char* what) {
  if (v.is_undefined()) undefined_error(v);
  if (!v.is_string()) type_error(fmt::format("{} must be a string, not {}", what, v.type_name()));
  return v.as_string();
}

std::int64_t need_int(const Value& v, const char* what) {
  if (v.kind() == Value::Kind::kBool) return v.as_bool() ? 1 : 0;
  if (v.kind() != Value::Kind::kInt)
    type_error(fmt::format("{} must be an integer, not {}", what, v.type_name()));
  return v.as_int();
}

Value bound(std::string name, Callable f) { return Value::callable(std::move(f), std::move(name)); }

Value string_method(const std::string& s, const std::string& name) {
  auto strip_with = [s](int which) {
    return [s, which](const CallArgs& a) {
      const Value chars = arg_or(a, 0, "chars", Value::none());
      return Value(chars.is_none()
                       ? py_strip(s, which)
                       : py_strip_chars(s, need_string(chars, "strip()'s argument"), which));
    };
  };
  if (name == "strip") return bound(name, strip_with(3));
  if (name == "lstrip") return bound(name, strip_with(1));
  if (name == "rstrip") return bound(name, strip_with(2));
  if (name == "upper") return bound(name, [s](const CallArgs&) { return Value(to_upper(s)); });
  if (name == "lower") return bound(name, [s](const CallArgs&) { return Value(to_lower(s)); });
  if (name == "title") return bound(name, [s](const CallArgs&) { return Value(py_title(s)); });
  if (name == "capitalize")
    return bound(name, [s](const CallArgs&) { return Value(capitalize(s)); });
  if (name == "split" || name == "rsplit") {
    return bound(name, [s, right = name == "rsplit"](const CallArgs& a) {
      const Value sep = arg_or(a, 0, "sep", Value::none());
      const std::int64_t max = need_int(arg_or(a, 1, "maxsplit", Value(-1)), "maxsplit");
      std::vector<std::string> parts =
          sep.is_none() ? py_split_whitespace(s, max, right)
                        : py_split(s, need_string(sep, "split()'s separator"), max, right);
      List out;
      for (auto& p : parts) out.emplace_back(std::move(p));
      return Value(std::move(out));
    });
  }
  if (name == "startswith" || name == "endswith") {
    return bound(name, [s, starts = name == "startswith"](const CallArgs& a) {
      const Value* x = arg(a, 0, "prefix");
      if (!x) type_error("startswith()/endswith() takes one argument");
      auto test = [&](const Value& p) {
        const std::string t = need_string(p, "the prefix");
        return starts ? s.compare(0, t.size(), t) == 0
                      : s.size() >= t.size() && s.compare(s.size() - t.size(), t.size(), t) == 0;
      };
      if (x->is_list()) {
        for (const Value& p : x->as_list())
          if (test(p)) return Value(true);
        return Value(false);
      }
      return Value(test(*x));
    });
  }
  if (name == "replace") {
    return bound(name, [s](const CallArgs& a) {
      const Value* from = arg(a, 0, "old");
      const Value* to = arg(a, 1, "new");
      if (!from || !to) type_error("replace() takes two arguments");
      const std::int64_t count = need_int(arg_or(a, 2, "count", Value(-1)), "count");
      return Value(py_replace(s, need_string(*from, "replace()'s old"),
                              need_string(*to, "replace()'s new"), count));
    });
  }
  if (name == "find" || name == "rfind" || name == "count") {
    return bound(name, [s, name](const CallArgs& a) {
      const Value* x = arg(a, 0, "sub");
      if (!x) type_error(name + "() takes one argument");
      const std::string t = need_string(*x, "the substring");
      if (name != "count") {
        const std::size_t at = name == "find" ? s.find(t) : s.rfind(t);
        return Value(at == std::string::npos
                         ? std::int64_t{-1}
                         : static_cast<std::int64_t>(utf8_length(s.substr(0, at))));
      }
      std::int64_t n = 0;
      if (t.empty()) return Value(static_cast<std::int64_t>(utf8_length(s)) + 1);
      for (std::size_t at = s.find(t); at != std::string::npos; at = s.find(t, at + t.size())) ++n;
      return Value(n);
    });
  }
  if (name == "join") {
    return bound(name, [s](const CallArgs& a) {
      const Value* x = arg(a, 0, "iterable");
      if (!x) type_error("join() takes one argument");
      std::string out;
      bool first = true;
      for (const Value& item : iterate(*x)) {
        if (!first) out += s;
        first = false;
        out += need_string(item, "join()'s items");
      }
      return Value(std::move(out));
    });
  }
  if (name == "isdigit" || name == "isspace" || name == "isalpha" || name == "isupper" ||
      name == "islower") {
    return bound(name, [s, name](const CallArgs&) { return Value(py_is(s, name)); });
  }
  return Value::undefined(fmt::format("'str object' has no attribute '{}'", name));
}

Value dict_method(const Value& d, const std::string& name) {
  if (name == "items" || name == "keys" || name == "values") {
    return bound(name, [d, name](const CallArgs&) {
      List out;
      for (const auto& [k, v] : d.as_dict().items()) {
        if (name == "items")
          out.push_back(Value::tuple(List{Value(k), v}));
        else
          out.push_back(name == "keys" ? Value(k) : v);
      }
      return Value(std::move(out));
    });
  }
  if (name == "get") {
    return bound(name, [d](const CallArgs& a) {
      const Value* key = arg(a, 0, "key");
      if (!key) type_error("get() takes at least one argument");
      const Value* found = key->is_string() ? d.as_dict().find(key->as_string()) : nullptr;
      return found ? *found : arg_or(a, 1, "default", Value::none());
    });
  }
  return Value();
}

std::int64_t index_of(std::int64_t i, std::size_t size) {
  return i < 0 ? i + static_cast<std::int64_t>(size) : i;
}

}  // namespace

Value get_attr(const Value& obj, const std::string& name) {
  switch (obj.kind()) {
    case Value::Kind::kUndefined:
      undefined_error(obj);
    case Value::Kind::kDict: {
      // Python's getattr first: a dict's methods shadow keys of the same name.
      if (Value m = dict_method(obj, name); !m.is_undefined()) return m;
      if (const Value* v = obj.as_dict().find(name)) return *v;
      return Value::undefined(fmt::format("'dict object' has no attribute '{}'", name));
    }
    case Value::Kind::kNamespace:
      if (const Value* v = obj.namespace_attrs().find(name)) return *v;
      return Value::undefined(fmt::format("'Namespace object' has no attribute '{}'", name));
    case Value::Kind::kString:
      return string_method(obj.as_string(), name);
    default:
      return Value::undefined(
          fmt::format("'{} object' has no attribute '{}'", obj.type_name(), name));
  }
}

Value get_item(const Value& obj, const Value& key) {
  switch (obj.kind()) {
    case Value::Kind::kUndefined:
      undefined_error(obj);
    case Value::Kind::kDict:
      if (key.is_string()) {
        if (const Value* v = obj.as_dict().find(key.as_string())) return *v;
        return Value::undefined(
            fmt::format("'dict object' has no attribute '{}'", key.as_string()));
      }
      return Value::undefined("'dict object' has no such key");
    case Value::Kind::kNamespace:
      return key.is_string() ? get_attr(obj, key.as_string()) : Value();
    case Value::Kind::kList: {
      if (key.kind() != Value::Kind::kInt) {
        if (key.is_string()) return get_attr(obj, key.as_string());
        type_error("list indices must be integers, not " + key.type_name());
      }
      const std::int64_t i = index_of(key.as_int(), obj.as_list().size());
      if (i < 0 || i >= static_cast<std::int64_t>(obj.as_list().size()))
        return Value::undefined("list object has no element " + std::to_string(key.as_int()));
      return obj.as_list()[static_cast<std::size_t>(i)];
    }
    case Value::Kind::kString: {
      if (key.kind() != Value::Kind::kInt) {
        if (key.is_string()) return get_attr(obj, key.as_string());
        type_error("string indices must be integers");
      }
      const std::vector<std::string> chars = utf8_chars(obj.as_string());
      const std::int64_t i = index_of(key.as_int(), chars.size());
      if (i < 0 || i >= static_cast<std::int64_t>(chars.size()))
        return Value::undefined("string index out of range");
      return Value(chars[static_cast<std::size_t>(i)]);
    }
    default:
      return Value::undefined(fmt::format("'{} object' is not subscriptable", obj.type_name()));
  }
}

Value get_slice(const Value& obj, const Value& start, const Value& stop, const Value& step) {
  if (obj.is_undefined()) undefined_error(obj);
  auto bound_of = [](const Value& v, const char* what) -> std::optional<std::int64_t> {
    if (v.is_undefined() || v.is_none()) return std::nullopt;
    return need_int(v, what);
  };
  const auto s0 = bound_of(start, "a slice start"), s1 = bound_of(stop, "a slice stop");
  const std::int64_t st = bound_of(step, "a slice step").value_or(1);
  if (st == 0) type_error("slice step cannot be zero");
  std::vector<Value> items;
  std::vector<std::string> chars;
  if (obj.is_list()) {
    items = obj.as_list();
  } else if (obj.is_string()) {
    chars = utf8_chars(obj.as_string());
    for (auto& c : chars) items.emplace_back(c);
  } else {
    type_error(fmt::format("'{}' object is not subscriptable", obj.type_name()));
  }
  const auto n = static_cast<std::int64_t>(items.size());
  // Python's slice.indices().
  auto clamp = [&](std::optional<std::int64_t> v, std::int64_t dflt) {
    if (!v) return dflt;
    std::int64_t x = *v < 0 ? *v + n : *v;
    if (st > 0) return std::clamp<std::int64_t>(x, 0, n);
    return std::clamp<std::int64_t>(x, -1, n - 1);
  };
  const std::int64_t lo = clamp(s0, st > 0 ? 0 : n - 1), hi = clamp(s1, st > 0 ? n : -1);
  List out;
  for (std::int64_t i = lo; st > 0 ? i < hi : i > hi; i += st)
    out.push_back(items[static_cast<std::size_t>(i)]);
  if (!obj.is_string()) return Value(std::move(out));
  std::string s;
  for (const Value& c : out) s += c.as_string();
  return Value(std::move(s));
}

List iterate(const Value& v) {
  switch (v.kind()) {
    case Value::Kind::kUndefined:
      return {};
    case Value::Kind::kList:
      return v.as_list();
    case Value::Kind::kDict: {
      List keys;
      for (const auto& [k, x] : v.as_dict().items()) keys.emplace_back(k);
      return keys;
    }
    case Value::Kind::kString: {
      List chars;
      for (auto& c : utf8_chars(v.as_string())) chars.emplace_back(c);
      return chars;
    }
    default:
      type_error(fmt::format("'{}' object is not iterable", v.type_name()));
  }
}

}  // namespace cachet::chat
