#include "chat/jinja_eval.h"

#include <fmt/format.h>

#include <memory>
#include <unordered_map>
#include <vector>

#include "chat/jinja_builtins.h"

namespace cachet::chat {
namespace {

enum class Flow { kNormal, kBreak, kContinue };

using Frame = std::unordered_map<std::string, Value>;

// Rendering nested deeper than this (macros calling macros) is an error, not a stack overflow.
constexpr int kMaxDepth = 200;
// A template that runs more statements and loop iterations than this (nested loops over long
// ranges) is stopped: a real template over a long conversation runs tens of thousands.
constexpr std::int64_t kMaxSteps = 1'000'000;
// Nor may its output grow past this.
constexpr std::size_t kMaxOutput = std::size_t{64} << 20;

class Evaluator {
 public:
  Evaluator(const Dict& variables, std::time_t now) : now_(now) {
    frames_.push_back(std::make_shared<Frame>());
    install_globals();
    for (const auto& [k, v] : variables.items()) (*frames_[0])[k] = v;
  }
  // Namespaces are the one mutable value, so the only way to a reference cycle
  // (`{% set ns.me = ns %}`): emptying every one the render made frees them all.
  ~Evaluator() {
    for (const Value& ns : namespaces_) ns.namespace_attrs() = Dict();
  }
  Evaluator(const Evaluator&) = delete;
  Evaluator& operator=(const Evaluator&) = delete;

  void exec(const Body& body, std::string& out) {
    if (run(body, out) != Flow::kNormal) throw TemplateError("break or continue outside a loop");
  }

 private:
  void count_step(int line) {
    if (++steps_ > kMaxSteps)
      throw TemplateError(
          fmt::format("chat template line {}: more than {} steps: stopped", line, kMaxSteps), line);
  }

  Flow run(const Body& body, std::string& out) {
    for (const StmtPtr& s : body) {
      count_step(s->line);
      if (out.size() > kMaxOutput)
        throw TemplateError(fmt::format("chat template line {}: output over {} MiB: stopped",
                                        s->line, kMaxOutput >> 20),
                            s->line);
      Flow f;
      try {
        f = step(*s, out);
      } catch (const TemplateRaised& e) {
        if (e.line() != 0) throw;
        throw TemplateRaised(fmt::format("chat template line {}: {}", s->line, e.what()), s->line);
      } catch (const TemplateError& e) {
        if (e.line() != 0) throw;
        throw TemplateError(fmt::format("chat template line {}: {}", s->line, e.what()), s->line);
      }
      if (f != Flow::kNormal) return f;
    }
    return Flow::kNormal;
  }

  Flow step(const Stmt& s, std::string& out) {
    switch (s.kind) {
      case Stmt::Kind::kText:
        out += s.text;
        return Flow::kNormal;
      case Stmt::Kind::kOutput:
        out += eval(*s.expr).str();
        return Flow::kNormal;
      case Stmt::Kind::kIf:
        for (const auto& [cond, body] : s.branches)
          if (!cond || eval(*cond).truthy()) return run(body, out);
        return Flow::kNormal;
      case Stmt::Kind::kFor:
        return run_for(s, out);
      case Stmt::Kind::kSet:
        assign(s, eval(*s.expr));
        return Flow::kNormal;
      case Stmt::Kind::kSetBlock: {
        std::string captured;
        exec(s.body, captured);
        assign(s, Value(std::move(captured)));
        return Flow::kNormal;
      }
      case Stmt::Kind::kMacro:
        (*frames_.back())[s.name] = macro(s);
        return Flow::kNormal;
      case Stmt::Kind::kBreak:
        return Flow::kBreak;
      case Stmt::Kind::kContinue:
        return Flow::kContinue;
      case Stmt::Kind::kBlock:
        return run(s.body, out);
    }
    return Flow::kNormal;
  }

  void assign(const Stmt& s, Value v) {
    if (!s.target_attr.empty()) {
      const Value ns = lookup(s.targets[0]);
      if (ns.kind() != Value::Kind::kNamespace)
        throw TemplateError(fmt::format(
            "cannot assign attribute '{}' on {} '{}': only a namespace() takes attributes",
            s.target_attr, ns.type_name(), s.targets[0]));
      ns.namespace_attrs().set(s.target_attr, std::move(v));
      return;
    }
    if (s.targets.size() == 1) {
      (*frames_.back())[s.targets[0]] = std::move(v);
      return;
    }
    const List items = iterate(v);
    if (items.size() != s.targets.size())
      throw TemplateError(
          fmt::format("cannot unpack {} values into {} names", items.size(), s.targets.size()));
    for (std::size_t i = 0; i < items.size(); ++i) (*frames_.back())[s.targets[i]] = items[i];
  }

  void bind_targets(const Stmt& s, const Value& item, Frame& frame) {
    if (s.targets.size() == 1) {
      frame[s.targets[0]] = item;
      return;
    }
    const List parts = iterate(item);
    if (parts.size() != s.targets.size())
      throw TemplateError(fmt::format("cannot unpack {} values into {} loop variables",
                                      parts.size(), s.targets.size()));
    for (std::size_t i = 0; i < parts.size(); ++i) frame[s.targets[i]] = parts[i];
  }

  // Each iteration runs in a frame of its own: a `set` in the body lasts for that iteration
  // only (Jinja2's scoping; a namespace() carries state across iterations).
  Flow run_for(const Stmt& s, std::string& out) {
    const Value seq = eval(*s.expr);
    if (seq.is_none()) throw TemplateError("'NoneType' object is not iterable");
    List items = iterate(seq);
    frames_.push_back(nullptr);
    struct Pop {
      std::vector<std::shared_ptr<Frame>>& f;
      ~Pop() { f.pop_back(); }
    } pop{frames_};
    if (s.filter) {
      List kept;
      for (const Value& item : items) {
        frames_.back() = std::make_shared<Frame>();
        bind_targets(s, item, *frames_.back());
        if (eval(*s.filter).truthy()) kept.push_back(item);
      }
      items = std::move(kept);
    }
    const auto n = static_cast<std::int64_t>(items.size());
    for (std::int64_t i = 0; i < n; ++i) {
      count_step(s.line);
      frames_.back() = std::make_shared<Frame>();
      bind_targets(s, items[static_cast<std::size_t>(i)], *frames_.back());
      (*frames_.back())["loop"] = loop_value(items, i);
      if (run(s.body, out) == Flow::kBreak) break;
    }
    if (n == 0) {
      frames_.back() = std::make_shared<Frame>();
      return run(s.else_body, out);
    }
    return Flow::kNormal;
  }

  static Value loop_value(const List& items, std::int64_t i) {
    const auto n = static_cast<std::int64_t>(items.size());
    Dict loop;
    loop.set("index", Value(i + 1));
    loop.set("index0", Value(i));
    loop.set("revindex", Value(n - i));
    loop.set("revindex0", Value(n - i - 1));
    loop.set("first", Value(i == 0));
    loop.set("last", Value(i == n - 1));
    loop.set("length", Value(n));
    loop.set("depth", Value(1));
    loop.set("depth0", Value(0));
    loop.set("previtem", i > 0 ? items[static_cast<std::size_t>(i - 1)]
                               : Value::undefined("there is no previous item"));
    loop.set("nextitem", i + 1 < n ? items[static_cast<std::size_t>(i + 1)]
                                   : Value::undefined("there is no next item"));
    loop.set("cycle", Value::callable(
                          [i](const CallArgs& a) {
                            if (a.positional.empty())
                              throw TemplateError("loop.cycle needs at least one value");
                            return a.positional[static_cast<std::size_t>(i) % a.positional.size()];
                          },
                          "cycle"));
    return Value(std::move(loop));
  }

  Value macro(const Stmt& s) {
    return Value::callable(
        [this, &s](const CallArgs& a) {
          if (++depth_ > kMaxDepth) throw TemplateError("macros nested too deeply");
          auto frame = std::make_shared<Frame>();
          if (a.positional.size() > s.params.size())
            throw TemplateError(fmt::format("macro '{}' takes {} arguments, {} given", s.name,
                                            s.params.size(), a.positional.size()));
          for (std::size_t i = 0; i < s.params.size(); ++i) {
            const auto& [name, def] = s.params[i];
            const Value* given = i < a.positional.size() ? &a.positional[i] : nullptr;
            for (const auto& [k, v] : a.keyword)
              if (k == name) given = &v;
            (*frame)[name] = given ? *given
                             : def ? eval(*def)
                                   : Value::undefined(fmt::format("'{}' is undefined", name));
          }
          // A macro sees the template's top level, not its caller's locals.
          std::vector<std::shared_ptr<Frame>> saved(frames_.begin() + 1, frames_.end());
          frames_.resize(1);
          frames_.push_back(frame);
          std::string out;
          try {
            exec(s.body, out);
          } catch (...) {
            frames_.resize(1);
            frames_.insert(frames_.end(), saved.begin(), saved.end());
            --depth_;
            throw;
          }
          frames_.resize(1);
          frames_.insert(frames_.end(), saved.begin(), saved.end());
          --depth_;
          return Value(std::move(out));
        },
        s.name);
  }

  Value lookup(const std::string& name) const {
    for (auto it = frames_.rbegin(); it != frames_.rend(); ++it)
      if (auto f = (*it)->find(name); f != (*it)->end()) return f->second;
    return Value::undefined(fmt::format("'{}' is undefined", name));
  }

  CallArgs args_of(const Expr& e) {
    CallArgs a;
    for (const ExprPtr& x : e.items) a.positional.push_back(eval(*x));
    for (const auto& [k, x] : e.kwargs) a.keyword.emplace_back(k, eval(*x));
    return a;
  }

  Value eval(const Expr& e) {
    switch (e.kind) {
      case Expr::Kind::kLiteral:
        return e.value;
      case Expr::Kind::kName:
        return lookup(e.name);
      case Expr::Kind::kList:
      case Expr::Kind::kTuple: {
        List items;
        for (const ExprPtr& x : e.items) items.push_back(eval(*x));
        return e.kind == Expr::Kind::kTuple ? Value::tuple(std::move(items))
                                            : Value(std::move(items));
      }
      case Expr::Kind::kDict: {
        Dict d;
        for (std::size_t i = 0; i + 1 < e.items.size(); i += 2)
          d.set(eval(*e.items[i]).str(), eval(*e.items[i + 1]));
        return Value(std::move(d));
      }
      case Expr::Kind::kAttr:
        return get_attr(eval(*e.a), e.name);
      case Expr::Kind::kIndex:
        return get_item(eval(*e.a), eval(*e.b));
      case Expr::Kind::kSlice: {
        auto part = [&](std::size_t i) { return e.items[i] ? eval(*e.items[i]) : Value(); };
        return get_slice(eval(*e.a), part(0), part(1), part(2));
      }
      case Expr::Kind::kCall: {
        const Value f = eval(*e.a);
        if (f.is_undefined())
          throw TemplateError(f.name().empty() ? "calling an undefined value" : f.name());
        if (f.kind() != Value::Kind::kCallable)
          throw TemplateError(fmt::format("'{}' object is not callable", f.type_name()));
        return f.as_callable()(args_of(e));
      }
      case Expr::Kind::kFilter:
        return apply_filter(e.name, eval(*e.a), args_of(e));
      case Expr::Kind::kTest:
        return Value(apply_test(e.name, eval(*e.a), args_of(e)) != e.negated);
      case Expr::Kind::kUnary: {
        const Value v = eval(*e.a);
        if (e.name == "not") return Value(!v.truthy());
        if (v.kind() == Value::Kind::kInt) {
          if (e.name == "-" && v.as_int() == INT64_MIN)
            throw TemplateError("integer overflow in -: beyond 64 bits");
          return Value(e.name == "-" ? -v.as_int() : v.as_int());
        }
        if (v.kind() == Value::Kind::kFloat)
          return Value(e.name == "-" ? -v.as_number() : v.as_number());
        throw TemplateError(
            fmt::format("bad operand type for unary {}: '{}'", e.name, v.type_name()));
      }
      case Expr::Kind::kBinary: {
        if (e.name == "and" || e.name == "or") {
          Value a = eval(*e.a);
          if (a.truthy() == (e.name == "or")) return a;
          return eval(*e.b);
        }
        return binary_op(e.name, eval(*e.a), eval(*e.b));
      }
      case Expr::Kind::kCondition:
        if (eval(*e.b).truthy()) return eval(*e.a);
        return e.c ? eval(*e.c) : Value::undefined("the condition was false and there is no else");
    }
    return Value();
  }

  void install_globals() {
    Frame& g = *frames_[0];
    g["namespace"] = Value::callable(
        [this](const CallArgs& a) {
          Dict attrs;
          for (const Value& d : a.positional)
            if (d.is_dict())
              for (const auto& [k, v] : d.as_dict().items()) attrs.set(k, v);
          for (const auto& [k, v] : a.keyword) attrs.set(k, v);
          namespaces_.push_back(Value::namespace_(std::move(attrs)));
          return namespaces_.back();
        },
        "namespace");
    g["dict"] = Value::callable(
        [](const CallArgs& a) {
          Dict d;
          for (const auto& [k, v] : a.keyword) d.set(k, v);
          return Value(std::move(d));
        },
        "dict");
    g["range"] = Value::callable(
        [](const CallArgs& a) {
          std::int64_t start = 0, stop = 0, step = 1;
          auto num = [](const Value& v) {
            if (v.kind() != Value::Kind::kInt) throw TemplateError("range() takes integers");
            return v.as_int();
          };
          if (a.positional.size() == 1) {
            stop = num(a.positional[0]);
          } else if (a.positional.size() == 2 || a.positional.size() == 3) {
            start = num(a.positional[0]);
            stop = num(a.positional[1]);
            if (a.positional.size() == 3) step = num(a.positional[2]);
          } else {
            throw TemplateError("range() takes 1 to 3 arguments");
          }
          if (step == 0) throw TemplateError("range() step must not be zero");
          List out;
          for (std::int64_t i = start; step > 0 ? i < stop : i > stop;) {
            if (out.size() >= 100000) throw TemplateError("range() too long for a template");
            out.emplace_back(i);
            if (__builtin_add_overflow(i, step, &i)) break;  // past the 64-bit end: past stop
          }
          return Value(std::move(out));
        },
        "range");
    g["raise_exception"] = Value::callable(
        [](const CallArgs& a) -> Value {
          throw TemplateRaised(a.positional.empty() ? std::string("raise_exception()")
                                                    : a.positional[0].str());
        },
        "raise_exception");
    g["strftime_now"] = Value::callable(
        [this](const CallArgs& a) {
          const std::string format = a.positional.empty() ? "" : a.positional[0].str();
          std::tm tm{};
          localtime_r(&now_, &tm);
          char buf[256];
          const std::size_t n = std::strftime(buf, sizeof buf, format.c_str(), &tm);
          return Value(std::string(buf, n));
        },
        "strftime_now");
  }

  std::vector<std::shared_ptr<Frame>> frames_;
  std::vector<Value> namespaces_;  // every namespace() made, emptied at the end
  std::time_t now_;
  int depth_ = 0;
  std::int64_t steps_ = 0;
};

}  // namespace

std::string render(const Body& program, const Dict& variables, std::time_t now) {
  Evaluator ev(variables, now);
  std::string out;
  ev.exec(program, out);
  return out;
}

}  // namespace cachet::chat
