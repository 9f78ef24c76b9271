// Jinja2's filters and tests that chat templates use, with transformers' tojson.
#include <fmt/format.h>

#include <algorithm>
#include <charconv>
#include <cmath>
#include <map>

#include "chat/jinja_builtins.h"
#include "chat/jinja_strings.h"

namespace cachet::chat {
namespace {

[[noreturn]] void fail(const std::string& what) { throw TemplateError(what); }

// A value a filter needs defined (an undefined one raises its own error).
const Value& defined(const Value& v) {
  if (v.is_undefined()) fail(v.name().empty() ? "a value is undefined" : v.name());
  return v;
}

// str() of a value; an undefined one is '' (as Jinja2's Undefined prints).
std::string text_of(const Value& v) { return v.str(); }

// transformers' tojson(x, ensure_ascii=False, indent=None, separators=None, sort_keys=False).
Value tojson(const Value& v, const CallArgs& a) {
  if (v.is_undefined()) fail("Object of type Undefined is not JSON serializable");
  JsonStyle style;
  style.ensure_ascii = arg_or(a, 0, "ensure_ascii", Value(false)).truthy();
  const Value indent = arg_or(a, 1, "indent", Value::none());
  if (!indent.is_none()) {
    if (indent.kind() != Value::Kind::kInt || indent.as_int() > 1024)
      fail("tojson: indent must be an integer up to 1024");
    style.indent = static_cast<int>(indent.as_int());
  }
  const Value separators = arg_or(a, 2, "separators", Value::none());
  if (!separators.is_none()) {
    if (!separators.is_list() || separators.as_list().size() != 2)
      fail("tojson: separators must be an (item, key) pair");
    style.item_separator = separators.as_list()[0].str();
    style.key_separator = separators.as_list()[1].str();
  } else if (style.indent >= 0) {
    style.item_separator = ",";  // json.dumps' default with an indent
  }
  style.sort_keys = arg_or(a, 3, "sort_keys", Value(false)).truthy();
  return Value(python_json(v, style));
}

// The attribute path `a.b.c` of an item (a dict's keys, or an index).
Value attribute_of(const Value& item, const std::string& path) {
  Value v = item;
  std::size_t from = 0;
  for (;;) {
    const std::size_t dot = path.find('.', from);
    const std::string part = path.substr(from, dot - from);
    if (v.is_undefined()) return v;
    std::int64_t index = 0;
    const auto [end, ec] = std::from_chars(part.data(), part.data() + part.size(), index);
    // A part of digits is an index (one too large for any list indexes nothing).
    v = !part.empty() && std::all_of(part.begin(), part.end(), ::isdigit)
            ? (ec == std::errc() && end == part.data() + part.size() ? get_item(v, Value(index))
                                                                     : Value::undefined(part))
            : get_item(v, Value(part));
    if (dot == std::string::npos) return v;
    from = dot + 1;
  }
}

// Python's ordering for sort(): numbers, strings (optionally case-folded), lists.
bool less(const Value& a, const Value& b, bool case_sensitive) {
  if (a.is_number() && b.is_number()) return a.as_number() < b.as_number();
  if (a.is_string() && b.is_string())
    return case_sensitive ? a.as_string() < b.as_string()
                          : to_lower(a.as_string()) < to_lower(b.as_string());
  if (binary_op("<", a, b).truthy()) return true;
  return false;
}

// select / reject / selectattr / rejectattr.
Value select(const Value& seq, const CallArgs& a, bool by_attr, bool keep) {
  std::size_t at = 0;
  std::string attribute;
  if (by_attr) {
    const Value* name = arg(a, at++, "attribute");
    if (!name || !name->is_string()) fail("selectattr/rejectattr need an attribute name");
    attribute = name->as_string();
  }
  const Value* test = at < a.positional.size() ? &a.positional[at++] : nullptr;
  CallArgs test_args;
  test_args.positional.assign(
      a.positional.begin() + static_cast<std::ptrdiff_t>(std::min(at, a.positional.size())),
      a.positional.end());
  List out;
  for (const Value& item : iterate(seq)) {
    const Value subject = by_attr ? attribute_of(item, attribute) : item;
    const bool ok = test ? apply_test(test->str(), subject, test_args) : subject.truthy();
    if (ok == keep) out.push_back(item);
  }
  return Value(std::move(out));
}

Value map_filter(const Value& seq, const CallArgs& a) {
  List out;
  if (const Value* attr = arg(a, 99, "attribute")) {
    const Value dflt = arg_or(a, 99, "default", Value());
    for (const Value& item : iterate(seq)) {
      Value v = attribute_of(item, attr->str());
      out.push_back(v.is_undefined() && !dflt.is_undefined() ? dflt : v);
    }
    return Value(std::move(out));
  }
  if (a.positional.empty()) fail("map needs a filter name or attribute=");
  CallArgs rest;
  rest.positional.assign(a.positional.begin() + 1, a.positional.end());
  rest.keyword = a.keyword;
  for (const Value& item : iterate(seq))
    out.push_back(apply_filter(a.positional[0].str(), item, rest));
  return Value(std::move(out));
}

Value sort_filter(const Value& seq, const CallArgs& a) {
  const bool reverse = arg_or(a, 0, "reverse", Value(false)).truthy();
  const bool case_sensitive = arg_or(a, 1, "case_sensitive", Value(false)).truthy();
  const Value attribute = arg_or(a, 2, "attribute", Value::none());
  List items = iterate(seq);
  auto key = [&](const Value& v) {
    return attribute.is_none() ? v : attribute_of(v, attribute.str());
  };
  std::stable_sort(items.begin(), items.end(), [&](const Value& x, const Value& y) {
    return reverse ? less(key(y), key(x), case_sensitive) : less(key(x), key(y), case_sensitive);
  });
  return Value(std::move(items));
}

Value indent_filter(const Value& v, const CallArgs& a) {
  const Value width = arg_or(a, 0, "width", Value(4));
  const bool first = arg_or(a, 1, "first", Value(false)).truthy();
  const bool blank = arg_or(a, 2, "blank", Value(false)).truthy();
  if (!width.is_string())
    check_size(static_cast<std::size_t>(std::max<std::int64_t>(0, width.as_int())));
  const std::string pad =
      width.is_string()
          ? width.as_string()
          : std::string(static_cast<std::size_t>(std::max<std::int64_t>(0, width.as_int())), ' ');
  const std::string s = text_of(v);
  std::string out;
  std::size_t from = 0;
  bool first_line = true;
  for (;;) {
    const std::size_t nl = s.find('\n', from);
    const std::string line =
        s.substr(from, nl == std::string::npos ? std::string::npos : nl - from);
    if ((!first_line || first) && (blank || !py_strip(line, 3).empty())) out += pad;
    out += line;
    check_size(out.size());
    if (nl == std::string::npos) break;
    out += '\n';
    from = nl + 1;
    first_line = false;
  }
  return Value(std::move(out));
}

// Jinja2's int(value, default=0, base=10) and float(value, default=0.0): a string is read
// as an integer in `base`, else as a float (then truncated for int).
Value number_filter(const Value& v, const CallArgs& a, bool integer) {
  const Value dflt = arg_or(a, 0, "default", integer ? Value(0) : Value(0.0));
  if (v.is_numeric()) {
    if (integer)
      return v.kind() == Value::Kind::kFloat
                 ? Value(static_cast<std::int64_t>(std::trunc(v.as_number())))
                 : Value(v.as_int());
    return Value(v.as_number());
  }
  if (!v.is_string()) return dflt;
  const std::string s = py_strip(v.as_string(), 3);
  try {
    std::size_t used = 0;
    if (integer) {
      const int base = static_cast<int>(arg_or(a, 1, "base", Value(10)).as_int());
      const long long x = std::stoll(s, &used, base);
      if (used == s.size()) return Value(static_cast<std::int64_t>(x));
    }
    // Python's float() reads no hexadecimal (C's strtod would).
    if (s.find_first_of("xX") != std::string::npos) return dflt;
    const double x = std::stod(s, &used);
    if (used == s.size() && std::isfinite(x))
      return integer ? Value(static_cast<std::int64_t>(std::trunc(x))) : Value(x);
  } catch (const std::exception&) {
  }
  return dflt;
}

// Python's round(x, n): half to even on the exact binary value (what printf's %.nf does).
Value round_filter(const Value& v, const CallArgs& a) {
  const std::int64_t precision = arg_or(a, 0, "precision", Value(0)).as_int();
  const std::string method = arg_or(a, 1, "method", Value("common")).str();
  if (!v.is_numeric()) fail("round: not a number: " + v.type_name());
  if (method == "floor" || method == "ceil") {
    const double scale = std::pow(10.0, static_cast<double>(precision));
    const double x = v.as_number() * scale;
    return Value((method == "floor" ? std::floor(x) : std::ceil(x)) / scale);
  }
  if (method != "common") fail("round: method must be common, ceil or floor");
  if (v.kind() != Value::Kind::kFloat) {
    if (precision >= 0) return Value(v.as_int());
    const double scale = std::pow(10.0, static_cast<double>(-precision));
    return Value(
        static_cast<std::int64_t>(std::nearbyint(static_cast<double>(v.as_int()) / scale) * scale));
  }
  if (precision < 0) {
    const double scale = std::pow(10.0, static_cast<double>(-precision));
    return Value(std::nearbyint(v.as_number() / scale) * scale);
  }
  return Value(std::strtod(fmt::format("{:.{}f}", v.as_number(), precision).c_str(), nullptr));
}

// sum(iterable, attribute=None, start=0), min / max(iterable, case_sensitive=False).
Value aggregate(const Value& seq, const CallArgs& a, const std::string& which) {
  const List items = iterate(seq);
  if (which == "sum") {
    const Value attribute = arg_or(a, 0, "attribute", Value::none());
    Value total = arg_or(a, 1, "start", Value(0));
    for (const Value& item : items)
      total =
          binary_op("+", total, attribute.is_none() ? item : attribute_of(item, attribute.str()));
    return total;
  }
  if (items.empty())
    return Value::undefined(fmt::format("No aggregated item, sequence was empty."));
  const bool case_sensitive = arg_or(a, 0, "case_sensitive", Value(false)).truthy();
  const Value* best = &items[0];
  for (const Value& item : items)
    if (which == "min" ? less(item, *best, case_sensitive) : less(*best, item, case_sensitive))
      best = &item;
  return *best;
}

using Filter = Value (*)(const Value&, const CallArgs&);

const std::map<std::string, Filter, std::less<>>& filters() {
  static const std::map<std::string, Filter, std::less<>> table = {
      {"tojson", tojson},
      {"trim",
       [](const Value& v, const CallArgs& a) {
         const Value chars = arg_or(a, 0, "chars", Value::none());
         return Value(chars.is_none() ? py_strip(text_of(v), 3)
                                      : py_strip_chars(text_of(v), chars.str(), 3));
       }},
      {"length",
       [](const Value& v, const CallArgs&) {
         if (v.is_undefined()) return Value(0);  // Undefined has length 0
         const Value& d = v;
         if (d.is_string()) return Value(static_cast<std::int64_t>(utf8_length(d.as_string())));
         if (d.is_dict()) return Value(static_cast<std::int64_t>(d.as_dict().size()));
         if (d.is_list()) return Value(static_cast<std::int64_t>(d.as_list().size()));
         fail("object of type '" + d.type_name() + "' has no len()");
       }},
      {"upper", [](const Value& v, const CallArgs&) { return Value(to_upper(text_of(v))); }},
      {"lower", [](const Value& v, const CallArgs&) { return Value(to_lower(text_of(v))); }},
      {"title", [](const Value& v, const CallArgs&) { return Value(jinja_title(text_of(v))); }},
      {"capitalize", [](const Value& v, const CallArgs&) { return Value(capitalize(text_of(v))); }},
      {"string", [](const Value& v, const CallArgs&) { return Value(v.str()); }},
      {"safe", [](const Value& v, const CallArgs&) { return v; }},
      {"replace",
       [](const Value& v, const CallArgs& a) {
         const Value* from = arg(a, 0, "old");
         const Value* to = arg(a, 1, "new");
         if (!from || !to) fail("replace needs two arguments");
         const Value count = arg_or(a, 2, "count", Value::none());
         return Value(
             py_replace(text_of(v), from->str(), to->str(), count.is_none() ? -1 : count.as_int()));
       }},
      {"join",
       [](const Value& v, const CallArgs& a) {
         const std::string sep = arg_or(a, 0, "d", Value("")).str();
         const Value attribute = arg_or(a, 1, "attribute", Value::none());
         std::string out;
         bool first = true;
         for (const Value& item : iterate(v)) {
           if (!first) out += sep;
           first = false;
           out += (attribute.is_none() ? item : attribute_of(item, attribute.str())).str();
           check_size(out.size());
         }
         return Value(std::move(out));
       }},
      {"default",
       [](const Value& v, const CallArgs& a) {
         const bool boolean = arg_or(a, 1, "boolean", Value(false)).truthy();
         if (v.is_undefined() || (boolean && !v.truthy()))
           return arg_or(a, 0, "default_value", Value(""));
         return v;
       }},
      {"first",
       [](const Value& v, const CallArgs&) {
         const List items = iterate(v);
         return items.empty() ? Value::undefined("No first item, sequence was empty.")
                              : items.front();
       }},
      {"last",
       [](const Value& v, const CallArgs&) {
         const List items = iterate(v);
         return items.empty() ? Value::undefined("No last item, sequence was empty.")
                              : items.back();
       }},
      {"list", [](const Value& v, const CallArgs&) { return Value(iterate(v)); }},
      {"reverse",
       [](const Value& v, const CallArgs&) {
         if (v.is_string()) {
           std::vector<std::string> chars = utf8_chars(v.as_string());
           std::string out;
           for (auto it = chars.rbegin(); it != chars.rend(); ++it) out += *it;
           return Value(std::move(out));
         }
         List items = iterate(defined(v));
         std::reverse(items.begin(), items.end());
         return Value(std::move(items));
       }},
      {"unique",
       [](const Value& v, const CallArgs& a) {
         // Strings compare case-insensitively unless case_sensitive; the first of each stays.
         const bool case_sensitive = arg_or(a, 0, "case_sensitive", Value(false)).truthy();
         auto key = [&](const Value& x) {
           return !case_sensitive && x.is_string() ? Value(to_lower(x.as_string())) : x;
         };
         List out, keys;
         for (const Value& item : iterate(defined(v))) {
           const Value k = key(item);
           if (std::none_of(keys.begin(), keys.end(),
                            [&](const Value& x) { return equal(x, k); })) {
             keys.push_back(k);
             out.push_back(item);
           }
         }
         return Value(std::move(out));
       }},
      {"items",
       [](const Value& v, const CallArgs&) {
         if (v.is_undefined()) return Value(List{});
         if (!v.is_dict()) fail("items: not a mapping");
         List out;
         for (const auto& [k, x] : v.as_dict().items())
           out.push_back(Value::tuple(List{Value(k), x}));
         return Value(std::move(out));
       }},
      {"dictsort",
       [](const Value& v, const CallArgs& a) {
         if (!defined(v).is_dict()) fail("dictsort: not a mapping");
         const bool case_sensitive = arg_or(a, 0, "case_sensitive", Value(false)).truthy();
         const bool by_value = arg_or(a, 1, "by", Value("key")).str() == "value";
         const bool reverse = arg_or(a, 2, "reverse", Value(false)).truthy();
         List out;
         for (const auto& [k, x] : v.as_dict().items())
           out.push_back(Value::tuple(List{Value(k), x}));
         std::stable_sort(out.begin(), out.end(), [&](const Value& p, const Value& q) {
           const Value& x = p.as_list()[by_value ? 1 : 0];
           const Value& y = q.as_list()[by_value ? 1 : 0];
           return reverse ? less(y, x, case_sensitive) : less(x, y, case_sensitive);
         });
         return Value(std::move(out));
       }},
      {"select", [](const Value& v, const CallArgs& a) { return select(v, a, false, true); }},
      {"reject", [](const Value& v, const CallArgs& a) { return select(v, a, false, false); }},
      {"selectattr", [](const Value& v, const CallArgs& a) { return select(v, a, true, true); }},
      {"rejectattr", [](const Value& v, const CallArgs& a) { return select(v, a, true, false); }},
      {"map", map_filter},
      {"sort", sort_filter},
      {"indent", indent_filter},
      {"int", [](const Value& v, const CallArgs& a) { return number_filter(v, a, true); }},
      {"float", [](const Value& v, const CallArgs& a) { return number_filter(v, a, false); }},
      {"abs",
       [](const Value& v, const CallArgs&) {
         if (v.kind() == Value::Kind::kInt) {
           if (v.as_int() == INT64_MIN) fail("integer overflow in abs(): beyond 64 bits");
           return Value(v.as_int() < 0 ? -v.as_int() : v.as_int());
         }
         if (v.kind() == Value::Kind::kFloat) return Value(std::fabs(v.as_number()));
         fail("bad operand type for abs(): '" + v.type_name() + "'");
       }},
      {"round", round_filter},
      {"sum", [](const Value& v, const CallArgs& a) { return aggregate(v, a, "sum"); }},
      {"min", [](const Value& v, const CallArgs& a) { return aggregate(v, a, "min"); }},
      {"max", [](const Value& v, const CallArgs& a) { return aggregate(v, a, "max"); }},
      {"wordcount",
       [](const Value& v, const CallArgs&) {
         return Value(static_cast<std::int64_t>(word_count(text_of(v))));
       }},
  };
  return table;
}

}  // namespace

Value apply_filter(const std::string& name, const Value& subject, const CallArgs& args) {
  const std::string canonical = name == "d"                       ? "default"
                                : name == "count"                 ? "length"
                                : name == "e" || name == "escape" ? "safe"
                                                                  : name;
  const auto& table = filters();
  auto it = table.find(canonical);
  if (it == table.end()) fail(fmt::format("no filter named '{}'", name));
  return it->second(subject, args);
}

bool apply_test(const std::string& name, const Value& v, const CallArgs& args) {
  const Value* other = arg(args, 0, "value");
  using K = Value::Kind;
  if (name == "defined") return !v.is_undefined();
  if (name == "undefined") return v.is_undefined();
  if (name == "none") return v.is_none();
  if (name == "boolean") return v.kind() == K::kBool;
  if (name == "true") return v.kind() == K::kBool && v.as_bool();
  if (name == "false") return v.kind() == K::kBool && !v.as_bool();
  if (name == "integer") return v.kind() == K::kInt;
  if (name == "float") return v.kind() == K::kFloat;
  if (name == "number") return v.is_numeric();
  if (name == "string") return v.is_string();
  if (name == "mapping") return v.is_dict();
  if (name == "iterable") return v.is_list() || v.is_dict() || v.is_string() || v.is_undefined();
  if (name == "sequence") return v.is_list() || v.is_dict() || v.is_string();
  if (name == "callable") return v.kind() == K::kCallable;
  if (name == "lower") return py_is(v.str(), "islower");
  if (name == "upper") return py_is(v.str(), "isupper");
  if (name == "even" || name == "odd") {
    if (v.kind() != K::kInt) fail("the " + name + " test needs an integer");
    return (v.as_int() % 2 == 0) == (name == "even");
  }
  static const std::map<std::string, std::string, std::less<>> comparisons = {
      {"eq", "=="}, {"equalto", "=="}, {"==", "=="},      {"ne", "!="},
      {"!=", "!="}, {"lt", "<"},       {"lessthan", "<"}, {"<", "<"},
      {"le", "<="}, {"<=", "<="},      {"gt", ">"},       {"greaterthan", ">"},
      {">", ">"},   {"ge", ">="},      {">=", ">="},      {"in", "in"}};
  if (name == "sameas") {
    if (!other) fail("the sameas test needs an argument");
    return v.kind() == other->kind() && equal(v, *other);  // None, True, False are singletons
  }
  if (auto it = comparisons.find(name); it != comparisons.end()) {
    if (!other) fail("the " + name + " test needs an argument");
    return binary_op(it->second, v, *other).truthy();
  }
  if (name == "divisibleby") {
    if (!other || other->kind() != K::kInt || other->as_int() == 0 || v.kind() != K::kInt)
      fail("divisibleby needs two nonzero integers");
    return v.as_int() % other->as_int() == 0;
  }
  fail(fmt::format("no test named '{}'", name));
}

}  // namespace cachet::chat
