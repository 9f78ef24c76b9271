// The Jinja parser: tokens to statements and expressions, with Jinja2's precedence (lowest
// first): conditional, or, and, not, comparisons (incl. in / not in), + -, ~, * / // %, **,
// unary - +, then postfix . [] () and filters | / tests is.
#include <fmt/format.h>

#include <algorithm>
#include <charconv>
#include <set>

#include "chat/jinja_ast.h"
#include "chat/jinja_lexer.h"

namespace cachet::chat {
namespace {

using T = Token::Type;

// Deeper nesting (of blocks, or of parentheses and brackets) is an error rather than a stack
// overflow: no real template comes near it.
constexpr int kMaxNesting = 256;

class Parser {
 public:
  explicit Parser(std::vector<Token> tokens) : toks_(std::move(tokens)) {}

  Body parse_template() {
    Body body = parse_body({});
    if (peek().type != T::kEof) fail(peek().line, "unexpected end tag");
    return body;
  }

 private:
  [[noreturn]] static void fail(int line, const std::string& what) {
    throw TemplateError(fmt::format("chat template line {}: {}", line, what), line);
  }

  const Token& peek(std::size_t ahead = 0) const {
    return toks_[std::min(pos_ + ahead, toks_.size() - 1)];
  }
  const Token& next() { return toks_[std::min(pos_++, toks_.size() - 1)]; }
  bool at_op(const char* op, std::size_t ahead = 0) const {
    return peek(ahead).type == T::kOp && peek(ahead).text == op;
  }
  bool at_name(const char* name, std::size_t ahead = 0) const {
    return peek(ahead).type == T::kName && peek(ahead).text == name;
  }
  void expect_op(const char* op) {
    if (!at_op(op)) fail(peek().line, fmt::format("expected '{}', found {}", op, describe(peek())));
    ++pos_;
  }
  void expect(T type, const char* what) {
    if (peek().type != type)
      fail(peek().line, fmt::format("expected {}, found {}", what, describe(peek())));
    ++pos_;
  }
  std::string name_token(const char* what) {
    if (peek().type != T::kName)
      fail(peek().line, fmt::format("expected {}, found {}", what, describe(peek())));
    return next().text;
  }
  static std::string describe(const Token& t) {
    switch (t.type) {
      case T::kEof:
        return "the end of the template";
      case T::kBlockEnd:
        return "'%}'";
      case T::kVarEnd:
        return "'}}'";
      case T::kText:
        return "text";
      default:
        return "'" + t.text + "'";
    }
  }

  struct Nest {
    int& depth;
    Nest(int& d, int line) : depth(d) {
      if (++depth > kMaxNesting) {
        --depth;
        fail(line, fmt::format("nested more than {} levels deep", kMaxNesting));
      }
    }
    ~Nest() { --depth; }
  };

  // Statements until a block tag whose keyword is in `ends` (left unconsumed, after its {%).
  Body parse_body(const std::set<std::string>& ends) {
    const Nest nest(depth_, peek().line);
    Body body;
    for (;;) {
      const Token& t = peek();
      if (t.type == T::kEof) {
        if (!ends.empty()) {
          auto end = std::find_if(ends.begin(), ends.end(),
                                  [](const std::string& k) { return k.starts_with("end"); });
          fail(t.line, fmt::format("missing {{% {} %}}", end != ends.end() ? *end : *ends.begin()));
        }
        return body;
      }
      if (t.type == T::kText) {
        auto s = std::make_unique<Stmt>(Stmt::Kind::kText, t.line);
        s->text = t.text;
        body.push_back(std::move(s));
        ++pos_;
      } else if (t.type == T::kVarBegin) {
        ++pos_;
        auto s = std::make_unique<Stmt>(Stmt::Kind::kOutput, t.line);
        s->expr = parse_expression();
        expect(T::kVarEnd, "'}}'");
        body.push_back(std::move(s));
      } else if (t.type == T::kBlockBegin) {
        if (peek(1).type == T::kName && ends.contains(peek(1).text)) {
          ++pos_;  // the {% of the end tag: the caller reads its keyword
          return body;
        }
        ++pos_;
        body.push_back(parse_statement());
      } else {
        fail(t.line, "unexpected " + describe(t));
      }
    }
  }

  void end_tag(const char* keyword) {
    if (!at_name(keyword)) fail(peek().line, fmt::format("expected {{% {} %}}", keyword));
    ++pos_;
    expect(T::kBlockEnd, "'%}'");
  }

  StmtPtr parse_statement() {
    const int line = peek().line;
    const std::string keyword = name_token("a statement");
    if (keyword == "if") return parse_if(line);
    if (keyword == "for") return parse_for(line);
    if (keyword == "set") return parse_set(line);
    if (keyword == "macro") return parse_macro(line);
    if (keyword == "break" || keyword == "continue") {
      expect(T::kBlockEnd, "'%}'");
      return std::make_unique<Stmt>(keyword == "break" ? Stmt::Kind::kBreak : Stmt::Kind::kContinue,
                                    line);
    }
    if (keyword == "generation") {
      expect(T::kBlockEnd, "'%}'");
      auto s = std::make_unique<Stmt>(Stmt::Kind::kBlock, line);
      s->body = parse_body({"endgeneration"});
      end_tag("endgeneration");
      return s;
    }
    fail(line, fmt::format("unsupported Jinja statement '{}'", keyword));
  }

  StmtPtr parse_if(int line) {
    auto s = std::make_unique<Stmt>(Stmt::Kind::kIf, line);
    ExprPtr cond = parse_expression();
    expect(T::kBlockEnd, "'%}'");
    for (;;) {
      Body body = parse_body({"elif", "else", "endif"});
      s->branches.emplace_back(std::move(cond), std::move(body));
      const std::string k = next().text;
      if (k == "endif") break;
      if (k == "else") {
        expect(T::kBlockEnd, "'%}'");
        s->branches.emplace_back(nullptr, parse_body({"endif"}));
        end_tag("endif");
        return s;
      }
      cond = parse_expression();  // elif
      expect(T::kBlockEnd, "'%}'");
    }
    expect(T::kBlockEnd, "'%}'");
    return s;
  }

  StmtPtr parse_for(int line) {
    auto s = std::make_unique<Stmt>(Stmt::Kind::kFor, line);
    do {
      s->targets.push_back(name_token("a loop variable"));
    } while (at_op(",") && (++pos_, true));
    if (!at_name("in")) fail(peek().line, "expected 'in' in a for loop");
    ++pos_;
    s->expr = parse_or();  // not a conditional: `if` here filters the loop
    if (at_name("if")) {
      ++pos_;
      s->filter = parse_or();
    }
    if (at_name("recursive")) fail(peek().line, "recursive for loops are not supported");
    expect(T::kBlockEnd, "'%}'");
    s->body = parse_body({"else", "endfor"});
    if (next().text == "else") {
      expect(T::kBlockEnd, "'%}'");
      s->else_body = parse_body({"endfor"});
      end_tag("endfor");
    } else {
      expect(T::kBlockEnd, "'%}'");
    }
    return s;
  }

  StmtPtr parse_set(int line) {
    auto s = std::make_unique<Stmt>(Stmt::Kind::kSet, line);
    s->targets.push_back(name_token("a variable name"));
    if (at_op(".")) {
      ++pos_;
      s->target_attr = name_token("an attribute name");
    }
    while (at_op(",")) {
      ++pos_;
      s->targets.push_back(name_token("a variable name"));
    }
    if (peek().type == T::kBlockEnd) {
      if (s->targets.size() != 1 || !s->target_attr.empty())
        fail(line, "a {% set %} block assigns one variable");
      ++pos_;
      s->kind = Stmt::Kind::kSetBlock;
      s->body = parse_body({"endset"});
      end_tag("endset");
      return s;
    }
    expect_op("=");
    s->expr = parse_tuple_or_expression();
    expect(T::kBlockEnd, "'%}'");
    return s;
  }

  StmtPtr parse_macro(int line) {
    auto s = std::make_unique<Stmt>(Stmt::Kind::kMacro, line);
    s->name = name_token("a macro name");
    expect_op("(");
    while (!at_op(")")) {
      std::string param = name_token("a parameter name");
      ExprPtr def;
      if (at_op("=")) {
        ++pos_;
        def = parse_expression();
      }
      s->params.emplace_back(std::move(param), std::move(def));
      if (!at_op(",")) break;
      ++pos_;
    }
    expect_op(")");
    expect(T::kBlockEnd, "'%}'");
    s->body = parse_body({"endmacro"});
    if (!at_name("endmacro")) fail(peek().line, "expected {% endmacro %}");
    ++pos_;
    if (peek().type == T::kName) ++pos_;  // {% endmacro name %}
    expect(T::kBlockEnd, "'%}'");
    return s;
  }

  // ---- expressions ----

  ExprPtr make(Expr::Kind k, int line) { return std::make_unique<Expr>(k, line); }

  ExprPtr parse_tuple_or_expression() {
    ExprPtr first = parse_expression();
    if (!at_op(",")) return first;
    auto t = make(Expr::Kind::kTuple, first->line);
    t->items.push_back(std::move(first));
    while (at_op(",")) {
      ++pos_;
      t->items.push_back(parse_expression());
    }
    return t;
  }

  ExprPtr parse_expression() {
    const Nest nest(depth_, peek().line);
    ExprPtr e = parse_or();
    if (!at_name("if")) return e;
    const int line = next().line;
    auto c = make(Expr::Kind::kCondition, line);
    c->a = std::move(e);
    c->b = parse_or();
    if (at_name("else")) {
      ++pos_;
      c->c = parse_expression();
    }
    return c;
  }

  ExprPtr binary(std::string op, ExprPtr a, ExprPtr b, int line) {
    auto e = make(Expr::Kind::kBinary, line);
    e->name = std::move(op);
    e->a = std::move(a);
    e->b = std::move(b);
    return e;
  }

  ExprPtr parse_or() {
    ExprPtr e = parse_and();
    while (at_name("or")) {
      const int line = next().line;
      e = binary("or", std::move(e), parse_and(), line);
    }
    return e;
  }

  ExprPtr parse_and() {
    ExprPtr e = parse_not();
    while (at_name("and")) {
      const int line = next().line;
      e = binary("and", std::move(e), parse_not(), line);
    }
    return e;
  }

  ExprPtr parse_not() {
    if (at_name("not")) {
      const int line = next().line;
      auto e = make(Expr::Kind::kUnary, line);
      e->name = "not";
      e->a = parse_not();
      return e;
    }
    return parse_compare();
  }

  // a < b < c is (a < b) and (b < c), as in Python (b is evaluated twice: templates have no
  // side effects to tell).
  ExprPtr parse_compare() {
    ExprPtr e = parse_math1();
    const Expr* last = nullptr;  // the right operand of the previous comparison
    for (;;) {
      const int line = peek().line;
      std::string op;
      if (peek().type == T::kOp &&
          (peek().text == "==" || peek().text == "!=" || peek().text == "<" ||
           peek().text == "<=" || peek().text == ">" || peek().text == ">=")) {
        op = next().text;
      } else if (at_name("in")) {
        ++pos_;
        op = "in";
      } else if (at_name("not") && at_name("in", 1)) {
        pos_ += 2;
        op = "not in";
      } else {
        return e;
      }
      ExprPtr rhs = parse_math1();
      if (!last) {
        e = binary(op, std::move(e), std::move(rhs), line);
        last = e->b.get();
        continue;
      }
      ExprPtr next = binary(op, clone(*last), std::move(rhs), line);
      last = next->b.get();
      e = binary("and", std::move(e), std::move(next), line);
    }
  }

  // A copy of an expression (for the shared operand of a comparison chain).
  static ExprPtr clone(const Expr& x) {
    auto c = std::make_unique<Expr>(x.kind, x.line);
    c->value = x.value;
    c->name = x.name;
    c->negated = x.negated;
    for (const ExprPtr& i : x.items) c->items.push_back(i ? clone(*i) : nullptr);
    for (const auto& [k, v] : x.kwargs) c->kwargs.emplace_back(k, clone(*v));
    if (x.a) c->a = clone(*x.a);
    if (x.b) c->b = clone(*x.b);
    if (x.c) c->c = clone(*x.c);
    return c;
  }

  ExprPtr parse_math1() {
    ExprPtr e = parse_concat();
    while (at_op("+") || at_op("-")) {
      const Token& t = next();
      e = binary(t.text, std::move(e), parse_concat(), t.line);
    }
    return e;
  }

  ExprPtr parse_concat() {
    ExprPtr e = parse_math2();
    while (at_op("~")) {
      const int line = next().line;
      e = binary("~", std::move(e), parse_math2(), line);
    }
    return e;
  }

  ExprPtr parse_math2() {
    ExprPtr e = parse_pow();
    while (at_op("*") || at_op("/") || at_op("//") || at_op("%")) {
      const Token& t = next();
      e = binary(t.text, std::move(e), parse_pow(), t.line);
    }
    return e;
  }

  ExprPtr parse_pow() {
    ExprPtr e = parse_unary(true);
    while (at_op("**")) {
      const int line = next().line;
      e = binary("**", std::move(e), parse_unary(true), line);
    }
    return e;
  }

  ExprPtr parse_unary(bool with_filter) {
    const Nest nest(depth_, peek().line);
    ExprPtr e;
    if (at_op("-") || at_op("+")) {
      const Token& t = next();
      e = make(Expr::Kind::kUnary, t.line);
      e->name = t.text;
      e->a = parse_unary(false);
    } else {
      e = parse_postfix(parse_primary());
    }
    return with_filter ? parse_filters(std::move(e)) : std::move(e);
  }

  ExprPtr parse_primary() {
    const Token& t = next();
    switch (t.type) {
      case T::kName: {
        auto e = make(Expr::Kind::kLiteral, t.line);
        if (t.text == "true" || t.text == "True") {
          e->value = Value(true);
        } else if (t.text == "false" || t.text == "False") {
          e->value = Value(false);
        } else if (t.text == "none" || t.text == "None") {
          e->value = Value::none();
        } else {
          e->kind = Expr::Kind::kName;
          e->name = t.text;
        }
        return e;
      }
      case T::kString: {
        std::string s = t.text;
        while (peek().type == T::kString) s += next().text;  // "a" "b" is "ab"
        auto e = make(Expr::Kind::kLiteral, t.line);
        e->value = Value(std::move(s));
        return e;
      }
      case T::kInt:
      case T::kFloat: {
        auto e = make(Expr::Kind::kLiteral, t.line);
        try {
          e->value = t.type == T::kInt ? Value(static_cast<std::int64_t>(std::stoll(t.text)))
                                       : Value(std::stod(t.text));
        } catch (const std::exception&) {
          fail(t.line, "number out of range: " + t.text);
        }
        return e;
      }
      case T::kOp:
        if (t.text == "(") return parse_paren(t.line);
        if (t.text == "[") return parse_list(t.line);
        if (t.text == "{") return parse_dict(t.line);
        [[fallthrough]];
      default:
        fail(t.line, "unexpected " + describe(t) + " in an expression");
    }
  }

  ExprPtr parse_paren(int line) {
    if (at_op(")")) {
      ++pos_;
      return make(Expr::Kind::kTuple, line);
    }
    ExprPtr first = parse_expression();
    if (at_op(")")) {
      ++pos_;
      return first;
    }
    auto t = make(Expr::Kind::kTuple, line);
    t->items.push_back(std::move(first));
    while (at_op(",")) {
      ++pos_;
      if (at_op(")")) break;
      t->items.push_back(parse_expression());
    }
    expect_op(")");
    return t;
  }

  ExprPtr parse_list(int line) {
    auto l = make(Expr::Kind::kList, line);
    while (!at_op("]")) {
      l->items.push_back(parse_expression());
      if (!at_op(",")) break;
      ++pos_;
    }
    expect_op("]");
    return l;
  }

  ExprPtr parse_dict(int line) {
    auto d = make(Expr::Kind::kDict, line);
    while (!at_op("}")) {
      d->items.push_back(parse_expression());
      expect_op(":");
      d->items.push_back(parse_expression());
      if (!at_op(",")) break;
      ++pos_;
    }
    expect_op("}");
    return d;
  }

  void parse_args(Expr& call) {
    expect_op("(");
    while (!at_op(")")) {
      if (peek().type == T::kName && at_op("=", 1)) {
        std::string key = next().text;
        ++pos_;
        call.kwargs.emplace_back(std::move(key), parse_expression());
      } else {
        if (!call.kwargs.empty()) fail(peek().line, "a positional argument after a keyword one");
        call.items.push_back(parse_expression());
      }
      if (!at_op(",")) break;
      ++pos_;
    }
    expect_op(")");
  }

  ExprPtr parse_postfix(ExprPtr e) {
    for (;;) {
      const int line = peek().line;
      if (at_op(".")) {
        ++pos_;
        auto a = make(Expr::Kind::kAttr, line);
        if (peek().type == T::kInt) {  // x.0 is x[0]
          a->kind = Expr::Kind::kIndex;
          a->b = make(Expr::Kind::kLiteral, line);
          const Token& index = next();
          std::int64_t i = 0;
          const auto [end, ec] =
              std::from_chars(index.text.data(), index.text.data() + index.text.size(), i);
          if (ec != std::errc() || end != index.text.data() + index.text.size())
            fail(index.line, "index out of range: " + index.text);
          a->b->value = Value(i);
        } else {
          a->name = name_token("an attribute name");
        }
        a->a = std::move(e);
        e = std::move(a);
      } else if (at_op("[")) {
        ++pos_;
        e = parse_subscript(std::move(e), line);
      } else if (at_op("(")) {
        auto c = make(Expr::Kind::kCall, line);
        c->a = std::move(e);
        parse_args(*c);
        e = std::move(c);
      } else {
        return e;
      }
    }
  }

  ExprPtr parse_subscript(ExprPtr obj, int line) {
    ExprPtr parts[3];
    int colons = 0;
    for (;;) {
      if (at_op("]")) break;
      if (at_op(":")) {
        if (++colons > 2) fail(peek().line, "too many ':' in a slice");
        ++pos_;
        continue;
      }
      if (parts[colons]) fail(peek().line, "expected ']' or ':'");
      parts[colons] = parse_expression();
    }
    expect_op("]");
    if (colons == 0) {
      if (!parts[0]) fail(line, "empty subscript");
      auto i = make(Expr::Kind::kIndex, line);
      i->a = std::move(obj);
      i->b = std::move(parts[0]);
      return i;
    }
    auto s = make(Expr::Kind::kSlice, line);
    s->a = std::move(obj);
    for (auto& p : parts) s->items.push_back(std::move(p));
    return s;
  }

  ExprPtr parse_filters(ExprPtr e) {
    for (;;) {
      const int line = peek().line;
      if (at_op("|")) {
        ++pos_;
        auto f = make(Expr::Kind::kFilter, line);
        f->name = name_token("a filter name");
        while (at_op(".")) {  // a dotted filter name
          ++pos_;
          f->name += "." + name_token("a filter name");
        }
        if (at_op("(")) parse_args(*f);
        f->a = std::move(e);
        e = std::move(f);
      } else if (at_name("is")) {
        ++pos_;
        auto t = make(Expr::Kind::kTest, line);
        if (at_name("not")) {
          ++pos_;
          t->negated = true;
        }
        t->name = peek().type == T::kName ? next().text : "";
        if (t->name.empty()) {
          // `is none`, `is true`: the literals are names for tests too.
          fail(peek().line, "expected a test name after 'is'");
        }
        if (at_op("(")) {
          parse_args(*t);
        } else if (peek().type == T::kString || peek().type == T::kInt ||
                   peek().type == T::kFloat || at_op("[") || at_op("{") ||
                   (peek().type == T::kName && !at_name("and") && !at_name("or") &&
                    !at_name("else"))) {
          // `is divisibleby 3`, `is sameas x`, `is in [1, 2]`: one argument, as Jinja2 reads it.
          if (at_name("is")) fail(peek().line, "tests cannot be chained with 'is'");
          t->items.push_back(parse_postfix(parse_primary()));
        }
        t->a = std::move(e);
        e = std::move(t);
      } else {
        return e;
      }
    }
  }

  std::vector<Token> toks_;
  std::size_t pos_ = 0;
  int depth_ = 0;
};

}  // namespace

Body parse(const std::string& source) { return Parser(lex(source)).parse_template(); }

}  // namespace cachet::chat
