// The values a chat template computes with, as Python's Jinja2 sees them: undefined, None,
// booleans, integers, floats, strings, lists, dicts (insertion-ordered), callables (macros,
// builtins, bound methods) and namespaces (the one mutable object templates have). Strings,
// lists and dicts are immutable and shared; converting to and from JSON keeps dict order.
#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <nlohmann/json.hpp>
#include <stdexcept>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace cachet::chat {

// What rendering a template raises: a template's raise_exception(), a type error, an
// unsupported construct. `line` is the template line (0: not known yet; the evaluator fills
// it in as the error passes the statement it came from).
class TemplateError : public std::runtime_error {
 public:
  explicit TemplateError(const std::string& what, int line = 0)
      : std::runtime_error(what), line_(line) {}
  int line() const { return line_; }

 private:
  int line_;
};

// The longest string or list a template may build: a template that grows one without bound
// (doubling it in a loop, a huge indent or repetition) stops with a TemplateError instead of
// exhausting memory.
inline constexpr std::size_t kMaxTemplateSize = std::size_t{64} << 20;
inline void check_size(std::size_t n) {
  if (n > kMaxTemplateSize) throw TemplateError("a string or list over 64 Mi elements: stopped");
}
// Nor may it nest lists and dicts deeper than this (printing and comparing them recurse).
inline constexpr int kMaxValueDepth = 256;

class Value;
using List = std::vector<Value>;

// A dict in insertion order (Python 3.7+).
class Dict {
 public:
  const Value* find(std::string_view key) const;
  void set(const std::string& key, Value value);  // replaces, or appends a new key
  const std::vector<std::pair<std::string, Value>>& items() const { return items_; }
  std::size_t size() const;  // out of line: Value is incomplete here

 private:
  std::vector<std::pair<std::string, Value>> items_;
};

struct CallArgs {
  std::vector<Value> positional;
  std::vector<std::pair<std::string, Value>> keyword;
};
using Callable = std::function<Value(const CallArgs&)>;

class Value {
 public:
  enum class Kind {
    kUndefined,
    kNone,
    kBool,
    kInt,
    kFloat,
    kString,
    kList,
    kDict,
    kCallable,
    kNamespace
  };

  Value() = default;  // undefined
  static Value none();
  Value(bool b);  // NOLINT(google-explicit-constructor): literals read naturally
  Value(std::int64_t i);
  Value(int i) : Value(static_cast<std::int64_t>(i)) {}
  Value(double d);
  Value(std::string s);
  Value(const char* s) : Value(std::string(s)) {}
  Value(List list);
  Value(Dict dict);
  // A list that prints as a tuple: (1, 2) (what items() and dictsort give).
  static Value tuple(List items);
  static Value callable(Callable f, std::string name);
  static Value namespace_(Dict initial);  // namespace(...): attributes assignable by `set`
  // The name an undefined value was looked up under, for error messages.
  static Value undefined(std::string name);

  Kind kind() const { return kind_; }
  bool is_undefined() const { return kind_ == Kind::kUndefined; }
  bool is_none() const { return kind_ == Kind::kNone; }
  bool is_string() const { return kind_ == Kind::kString; }
  bool is_number() const { return kind_ == Kind::kInt || kind_ == Kind::kFloat; }
  // A number or a bool (Python's bool is an int: True + 1 == 2).
  bool is_numeric() const { return is_number() || kind_ == Kind::kBool; }
  bool is_list() const { return kind_ == Kind::kList; }
  bool is_dict() const { return kind_ == Kind::kDict; }

  bool as_bool() const { return b_; }
  // An int's value, or a bool's 0 / 1.
  std::int64_t as_int() const { return kind_ == Kind::kBool ? (b_ ? 1 : 0) : i_; }
  double as_number() const { return kind_ == Kind::kFloat ? d_ : static_cast<double>(as_int()); }
  const std::string& as_string() const { return *s_; }
  const List& as_list() const { return *list_; }
  const Dict& as_dict() const { return *dict_; }
  Dict& namespace_attrs() const { return *dict_; }  // kNamespace only
  const Callable& as_callable() const { return *call_; }
  const std::string& name() const { return *s_; }  // kCallable, kUndefined: its name
  int depth() const { return depth_; }

  // Python's truth value (an undefined value is false).
  bool truthy() const;
  // Python's str() (None -> "None", True -> "True", a list -> its repr); "" for undefined.
  std::string str() const;
  // Python's repr().
  std::string repr() const;
  // "string", "int", "list", ... for error messages.
  std::string type_name() const;

  // JSON in; JSON out (callables and namespaces are not JSON: Error naming the type).
  static Value from_json(const nlohmann::ordered_json& j);
  nlohmann::ordered_json to_json() const;

 private:
  Kind kind_ = Kind::kUndefined;
  bool b_ = false;
  bool tuple_ = false;  // kList: printed as a tuple
  int depth_ = 0;       // lists and dicts: 1 + their deepest item's depth
  std::int64_t i_ = 0;
  double d_ = 0;
  std::shared_ptr<const std::string> s_;  // string, or the name of a callable / undefined
  std::shared_ptr<const List> list_;
  std::shared_ptr<Dict> dict_;  // dict (never mutated once built) or namespace
  std::shared_ptr<const Callable> call_;
};

// Python ==, for any two values (ints and floats compare by value; lists and dicts deeply).
bool equal(const Value& a, const Value& b);
// Python's repr() of a float: the shortest digits that round-trip, in fixed notation from
// 1e-4 up to 1e16 ("1.0", "0.0001"), in scientific notation otherwise ("1e-05", "1e+16").
std::string float_repr(double d);
// json.dumps' options.
struct JsonStyle {
  bool ensure_ascii = false;  // non-ASCII as \uXXXX (surrogate pairs past U+FFFF)
  int indent = -1;            // < 0: one line
  std::string item_separator = ", ";
  std::string key_separator = ": ";
  bool sort_keys = false;
};
// json.dumps(v, ...) as Python writes it.
std::string python_json(const Value& v, const JsonStyle& style = {});

}  // namespace cachet::chat
