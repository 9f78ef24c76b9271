// Renders a parsed chat template: statements in order, Jinja2's scoping (a for loop's `set`s
// stay inside the loop; macros see the template's top level; a namespace() is the way out),
// its `loop` variable, and the globals transformers gives chat templates (raise_exception,
// strftime_now) beside Jinja2's own (range, namespace, dict).
#pragma once

#include <ctime>
#include <functional>
#include <string>

#include "chat/jinja_ast.h"
#include "chat/jinja_value.h"

namespace cachet::chat {

// What `raise_exception(message)` throws: the template refuses its input.
class TemplateRaised : public TemplateError {
 public:
  using TemplateError::TemplateError;
};

// `variables`: the template's top-level names (messages, add_generation_prompt, ...).
// `now`: strftime_now()'s time. Throws TemplateError (or TemplateRaised) whose message
// starts "chat template line N: ".
std::string render(const Body& program, const Dict& variables, std::time_t now);

}  // namespace cachet::chat
