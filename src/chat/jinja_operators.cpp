// Python's binary operators on template values.
#include <fmt/format.h>

#include <algorithm>
#include <cmath>
#include <cstdint>

#include "chat/jinja_builtins.h"

namespace cachet::chat {
namespace {

[[noreturn]] void unsupported(const std::string& op, const Value& a, const Value& b) {
  // An undefined operand raises its own error, as Jinja2's Undefined does.
  for (const Value* v : {&a, &b})
    if (v->is_undefined())
      throw TemplateError(v->name().empty() ? "a value is undefined" : v->name());
  throw TemplateError(fmt::format("unsupported operand type(s) for {}: '{}' and '{}'", op,
                                  a.type_name(), b.type_name()));
}

// Neither a float: Python's int arithmetic (bools count as ints).
bool both_int(const Value& a, const Value& b) {
  return a.kind() != Value::Kind::kFloat && b.kind() != Value::Kind::kFloat;
}

// Python's ints have no bound; a template's are 64-bit, and going past that is an error.
[[noreturn]] void overflow(const std::string& op) {
  throw TemplateError(fmt::format("integer overflow in {}: beyond 64 bits", op));
}

std::int64_t checked(const std::string& op, std::int64_t a, std::int64_t b) {
  std::int64_t r = 0;
  const bool over = op == "+"   ? __builtin_add_overflow(a, b, &r)
                    : op == "-" ? __builtin_sub_overflow(a, b, &r)
                                : __builtin_mul_overflow(a, b, &r);
  if (over) overflow(op);
  return r;
}

// a ** b for b >= 0, by squaring.
std::int64_t int_power(std::int64_t a, std::int64_t b) {
  std::int64_t r = 1;
  for (; b > 0; b >>= 1) {
    if ((b & 1) != 0) r = checked("*", r, a);
    if (b > 1) {
      if (a > 3037000499 || a < -3037000499) overflow("**");  // a * a would not fit
      a *= a;
    }
  }
  return r;
}

Value arithmetic(const std::string& op, const Value& a, const Value& b) {
  if (!a.is_numeric() || !b.is_numeric()) unsupported(op, a, b);
  const bool ints = both_int(a, b);
  const double x = a.as_number(), y = b.as_number();
  if (op == "+" || op == "-" || op == "*") {
    if (ints) return Value(checked(op, a.as_int(), b.as_int()));
    return Value(op == "+" ? x + y : op == "-" ? x - y : x * y);
  }
  if (op == "/") {
    if (y == 0) throw TemplateError("division by zero");
    return Value(x / y);
  }
  if (op == "//" || op == "%") {
    if (y == 0) throw TemplateError("integer division or modulo by zero");
    if (ints) {
      if (a.as_int() == INT64_MIN && b.as_int() == -1) {  // the quotient does not fit
        if (op == "%") return Value(std::int64_t{0});
        overflow(op);
      }
      // Python rounds toward negative infinity, and the remainder takes the divisor's sign.
      std::int64_t q = a.as_int() / b.as_int(), r = a.as_int() % b.as_int();
      if (r != 0 && ((r < 0) != (b.as_int() < 0))) {
        --q;
        r += b.as_int();
      }
      return op == "//" ? Value(q) : Value(r);
    }
    const double q = std::floor(x / y);
    return op == "//" ? Value(q) : Value(x - q * y);
  }
  if (op == "**") {
    if (ints && b.as_int() >= 0) return Value(int_power(a.as_int(), b.as_int()));
    return Value(std::pow(x, y));
  }
  unsupported(op, a, b);
}

// str % args, for the %s / %d / %% a template may use.
Value format_percent(const std::string& fmt_str, const Value& args) {
  const List items = args.is_list() ? args.as_list() : List{args};
  std::string out;
  std::size_t next = 0;
  for (std::size_t i = 0; i < fmt_str.size(); ++i) {
    if (fmt_str[i] != '%' || i + 1 == fmt_str.size()) {
      out += fmt_str[i];
      continue;
    }
    const char spec = fmt_str[++i];
    if (spec == '%') {
      out += '%';
      continue;
    }
    if (next >= items.size()) throw TemplateError("not enough arguments for format string");
    const Value& v = items[next++];
    if (spec == 's')
      out += v.str();
    else if (spec == 'r')
      out += v.repr();
    else if (spec == 'd' || spec == 'i')
      out += std::to_string(static_cast<std::int64_t>(v.as_number()));
    else
      throw TemplateError(fmt::format("unsupported format character '{}'", spec));
  }
  return Value(std::move(out));
}

bool contains(const Value& container, const Value& item) {
  switch (container.kind()) {
    case Value::Kind::kUndefined:
      return false;
    case Value::Kind::kString:
      if (!item.is_string())
        throw TemplateError("'in <string>' requires string as left operand, not " +
                            item.type_name());
      return container.as_string().find(item.as_string()) != std::string::npos;
    case Value::Kind::kList:
      for (const Value& v : container.as_list())
        if (equal(v, item)) return true;
      return false;
    case Value::Kind::kDict:
      return item.is_string() && container.as_dict().find(item.as_string()) != nullptr;
    default:
      throw TemplateError(
          fmt::format("argument of type '{}' is not iterable", container.type_name()));
  }
}

bool ordered(const std::string& op, const Value& a, const Value& b) {
  int c = 0;
  if (a.is_numeric() && b.is_numeric()) {
    c = a.as_number() < b.as_number() ? -1 : a.as_number() > b.as_number() ? 1 : 0;
  } else if (a.is_string() && b.is_string()) {
    c = a.as_string().compare(b.as_string());
  } else {
    unsupported(op, a, b);
  }
  if (op == "<") return c < 0;
  if (op == "<=") return c <= 0;
  if (op == ">") return c > 0;
  return c >= 0;
}

}  // namespace

Value binary_op(const std::string& op, const Value& a, const Value& b) {
  if (op == "==") return Value(equal(a, b));
  if (op == "!=") return Value(!equal(a, b));
  if (op == "<" || op == "<=" || op == ">" || op == ">=") return Value(ordered(op, a, b));
  if (op == "in") return Value(contains(b, a));
  if (op == "not in") return Value(!contains(b, a));
  if (op == "~") {  // an undefined operand is ''
    std::string s = a.str();
    const std::string t = b.str();
    check_size(s.size() + t.size());
    return Value(s + t);
  }
  if (op == "+") {
    if (a.is_string() && b.is_string()) {
      check_size(a.as_string().size() + b.as_string().size());
      return Value(a.as_string() + b.as_string());
    }
    if (a.is_list() && b.is_list()) {
      check_size(a.as_list().size() + b.as_list().size());
      List out = a.as_list();
      out.insert(out.end(), b.as_list().begin(), b.as_list().end());
      return Value(std::move(out));
    }
  }
  if (op == "*") {
    const Value* seq = a.is_string() || a.is_list()   ? &a
                       : b.is_string() || b.is_list() ? &b
                                                      : nullptr;
    const Value* times = seq == &a ? &b : &a;
    if (seq && times->kind() == Value::Kind::kInt) {
      const std::size_t unit = seq->is_string() ? seq->as_string().size() : seq->as_list().size();
      if (times->as_int() > 0 && unit > 0)
        check_size(unit * static_cast<std::size_t>(
                              std::min<std::int64_t>(times->as_int(), kMaxTemplateSize + 1)));
      if (seq->is_string()) {
        std::string out;
        for (std::int64_t i = 0; i < times->as_int(); ++i) out += seq->as_string();
        return Value(std::move(out));
      }
      List out;
      for (std::int64_t i = 0; i < times->as_int(); ++i)
        out.insert(out.end(), seq->as_list().begin(), seq->as_list().end());
      return Value(std::move(out));
    }
  }
  if (op == "%" && a.is_string()) return format_percent(a.as_string(), b);
  return arithmetic(op, a, b);
}

}  // namespace cachet::chat
