// A bound on how deeply the JSON that cachet reads may nest.
//
// nlohmann::json parses any depth without recursion, but dump(), copies and the recursive
// readers of nested components (a tokenizer.json "Sequence" inside a "Sequence" ...) recurse
// once per level: a hostile file nested a million levels deep would overflow the stack.
// Real files nest a handful of levels, so every JSON input is checked before it is parsed.
#pragma once

#include <cstddef>
#include <string_view>

namespace cachet::util {

inline constexpr std::size_t kMaxJsonDepth = 128;

// Whether the arrays and objects of `text` nest deeper than kMaxJsonDepth (brackets inside
// strings do not count). Linear in the text; stops at the first level too deep.
bool json_nests_too_deep(std::string_view text);

}  // namespace cachet::util
