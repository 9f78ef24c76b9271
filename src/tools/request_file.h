// Requests for `cachet generate`: --prompt-ids lists and --prompts-file JSON Lines.
#pragma once

#include <map>
#include <string>
#include <vector>

#include "cachet/engine.h"

namespace cachet::tools {

// "1,2,3" -> {1, 2, 3}. Throws cachet::Error naming the bad element.
std::vector<TokenId> parse_id_list(const std::string& text);

// --logit-bias values, "ID:BIAS" each. Throws cachet::Error naming the bad one (the ranges
// are the engine's to check).
std::map<TokenId, float> parse_logit_bias(const std::vector<std::string>& items);

// One non-empty line of a prompts file: its request, or why the line is not one.
struct RequestLine {
  Request request;
  std::string error;  // "FILE:LINE: ..." naming the field; empty for a good line
  std::string where;  // "FILE:LINE"
};

// One request per non-empty line: {"prompt_ids": [...]}, {"prompt": "text"} or
// {"messages": [...]} (a chat, with optional "tools", "add_generation_prompt" and
// "chat_template_kwargs"), with optional
// per-request sampling fields (temperature, top_k, top_p, min_p, seed, max_tokens, stop,
// stop_token_ids, ignore_eos, skip_special_tokens, logprobs, prompt_logprobs) and
// cache_salt, overriding `defaults`. A bad line (not JSON, an unknown field, a value of the
// wrong type or out of range) is reported in its RequestLine and does not stop the others.
// Throws cachet::Error when the file cannot be read or has no request line at all.
std::vector<RequestLine> read_requests_file(const std::string& path,
                                            const SamplingParams& defaults);

}  // namespace cachet::tools
