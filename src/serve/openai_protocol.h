// The OpenAI API's completion and chat completion requests, read and checked field by field
// (an ApiError naming the field for anything wrong), and the JSON of their responses and
// stream chunks. No engine calls: what a request asks for, and how its results are written.
#pragma once

#include <cstdint>
#include <nlohmann/json.hpp>
#include <optional>
#include <string>
#include <vector>

#include "cachet/engine.h"

namespace cachet::serve {

// What the server knows of its model.
struct ModelInfo {
  std::string name;  // what requests must name as "model"
  const Tokenizer* tokenizer = nullptr;
  const ChatTemplate* chat_template = nullptr;
  std::int32_t max_model_len = 0;
  std::int32_t vocab_size = 0;
  std::int64_t max_prompt_blocks = 0;  // KV blocks in all
  std::int32_t block_size = 16;
};

// A validated request: one prompt (chat) or several (completions), each generating
// params.n samples.
struct GenerationRequest {
  bool chat = false;
  std::vector<std::vector<TokenId>> prompts;
  SamplingParams params;
  std::string cache_salt;
  bool stream = false;
  bool include_usage = false;  // stream_options.include_usage
  bool logprobs = false;       // return logprobs (params.logprobs is how many top ones)
};

GenerationRequest parse_completion_request(const nlohmann::json& body, const ModelInfo& model);
GenerationRequest parse_chat_request(const nlohmann::json& body, const ModelInfo& model);

// One choice's result: prompt p, sample j.
struct Choice {
  std::int32_t index = 0;  // p * n + j
  std::string text;
  std::vector<TokenId> token_ids;
  std::vector<std::vector<TokenLogprob>> logprobs;
  std::optional<FinishReason> finish_reason;
  std::optional<CacheMiss> cache_miss;  // once it finished
};

struct Usage {
  std::int64_t prompt_tokens = 0, completion_tokens = 0, cached_tokens = 0;
};

// "length", "stop"; an aborted request as "abort" (vLLM's word).
std::string finish_reason_name(FinishReason r);
nlohmann::json usage_json(const Usage& u);

// The logprobs of `token_ids` (one entry of `entries` each) in the completions API's form
// (tokens, token_logprobs, top_logprobs, text_offset) or the chat API's (content: [...]).
nlohmann::json completion_logprobs(const Tokenizer& tok, const std::vector<TokenId>& token_ids,
                                   const std::vector<std::vector<TokenLogprob>>& entries,
                                   std::int32_t top, std::int64_t text_offset);
nlohmann::json chat_logprobs(const Tokenizer& tok, const std::vector<TokenId>& token_ids,
                             const std::vector<std::vector<TokenLogprob>>& entries,
                             std::int32_t top);

}  // namespace cachet::serve
