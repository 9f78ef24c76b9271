// A guard in front of every JSON parse of outside input. nlohmann::json parses without
// recursion, but dump(), copies and comparisons of the parsed value recurse once per nesting
// level, so a hostile file nested a million levels deep (a few MB) would overflow the stack
// when, for example, an error message prints the offending value. Real config.json,
// tokenizer.json, index and safetensors headers nest fewer than ten levels.
#pragma once

#include <string_view>

namespace cachet::util {

inline constexpr int kMaxJsonDepth = 128;

// The deepest nesting of arrays and objects in `text`, counting stops once past `limit`.
// Brackets inside strings do not count. Malformed text gives some depth; the parser that
// runs next reports what is wrong with it.
int json_nesting_depth(std::string_view text, int limit = kMaxJsonDepth);

inline bool json_nests_too_deep(std::string_view text) {
  return json_nesting_depth(text) > kMaxJsonDepth;
}

}  // namespace cachet::util
