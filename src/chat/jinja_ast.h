// The parsed form of a chat template: expressions and statements, each with its template line.
#pragma once

#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "chat/jinja_value.h"

namespace cachet::chat {

struct Expr;
using ExprPtr = std::unique_ptr<Expr>;

struct Expr {
  enum class Kind {
    kLiteral,    // value
    kName,       // name
    kList,       // items
    kTuple,      // items
    kDict,       // items: key, value, key, value, ...
    kAttr,       // a.name
    kIndex,      // a[b]
    kSlice,      // a[items[0]:items[1]:items[2]] (null items: omitted)
    kCall,       // a(items..., kwargs...)
    kFilter,     // a | name(items..., kwargs...)
    kTest,       // a is [not] name(items...)
    kUnary,      // name a: "not", "-", "+"
    kBinary,     // a name b: arithmetic, comparisons, "in", "not in", "and", "or", "~"
    kCondition,  // a if b else c (c null: undefined)
  };
  Kind kind;
  int line = 0;
  Value value;
  std::string name;
  std::vector<ExprPtr> items;
  std::vector<std::pair<std::string, ExprPtr>> kwargs;
  ExprPtr a, b, c;
  bool negated = false;  // kTest: "is not"

  Expr(Kind k, int l) : kind(k), line(l) {}
};

struct Stmt;
using StmtPtr = std::unique_ptr<Stmt>;
using Body = std::vector<StmtPtr>;

struct Stmt {
  enum class Kind {
    kText,      // text
    kOutput,    // {{ expr }}
    kIf,        // branches: (condition, body)..., then (null, else body)
    kFor,       // for targets in expr [if filter]: body [else: else_body]
    kSet,       // set targets = expr (a target: a name, or ns.attr as target_attr)
    kSetBlock,  // set targets[0]: body rendered to a string
    kMacro,     // macro name(params): body
    kBreak,
    kContinue,
    kBlock,  // a block rendered in place ({% generation %}: transformers' assistant-mask marker)
  };
  Kind kind;
  int line = 0;
  std::string text;
  ExprPtr expr;
  ExprPtr filter;
  std::vector<std::pair<ExprPtr, Body>> branches;
  std::vector<std::string> targets;
  std::string target_attr;  // kSet on a namespace: targets[0].target_attr = expr
  std::string name;
  std::vector<std::pair<std::string, ExprPtr>> params;  // kMacro: name, default (or null)
  Body body, else_body;

  Stmt(Kind k, int l) : kind(k), line(l) {}
};

// Throws TemplateError naming the line for a syntax error or an unsupported statement.
Body parse(const std::string& source);

}  // namespace cachet::chat
