// Requests for `cachet generate`: --prompt-ids lists and --prompts-file JSON Lines.
#pragma once

#include <string>
#include <vector>

#include "cachet/engine.h"

namespace cachet::tools {

// "1,2,3" -> {1, 2, 3}. Throws cachet::Error naming the bad element.
std::vector<TokenId> parse_id_list(const std::string& text);

// One request per non-empty line: {"prompt_ids": [...]} or {"prompt": "text"} with optional
// per-request sampling fields (temperature, top_k, top_p, min_p, seed, max_tokens, stop,
// stop_token_ids, ignore_eos, skip_special_tokens, logprobs, prompt_logprobs) and
// cache_salt, overriding
// `defaults`. Throws cachet::Error naming file, line and field.
std::vector<Request> read_requests_file(const std::string& path, const SamplingParams& defaults);

}  // namespace cachet::tools
