#include "serve/generation_run.h"

namespace cachet::serve {

GenerationRun::GenerationRun(Engine& engine, const GenerationRequest& request,
                             std::optional<CachePin> pin, std::shared_ptr<ServerMetrics> metrics)
    : n_(request.params.n) {
  for (std::size_t p = 0; p < request.prompts.size(); ++p) {
    Request r;
    r.prompt_token_ids = request.prompts[p];
    r.params = request.params;
    r.cache_salt = request.cache_salt;
    r.cache_pin = pin;
    prompt_tokens_.push_back(static_cast<std::int64_t>(r.prompt_token_ids.size()));
    cached_tokens_.push_back(0);
    streams_.push_back(std::make_unique<RequestStream>(engine, std::move(r), metrics));
    for (std::int32_t j = 0; j < n_; ++j) {
      Choice c;
      c.index = static_cast<std::int32_t>(p) * n_ + j;
      choices_.push_back(std::move(c));
    }
  }
}

std::vector<Delta> GenerationRun::pull(std::chrono::milliseconds timeout) {
  std::vector<Delta> out;
  // Wait on the first stream not done; take from all.
  bool waited = false;
  for (std::size_t p = 0; p < streams_.size(); ++p) {
    RequestStream& s = *streams_[p];
    if (s.done()) continue;
    const auto updates = s.take(waited ? std::chrono::milliseconds(0) : timeout);
    waited = true;
    for (const SampleUpdate& u : updates) {
      Choice& c = choices_[p * static_cast<std::size_t>(n_) + static_cast<std::size_t>(u.sample)];
      Delta d;
      d.index = c.index;
      d.text = u.text;
      d.token_ids = u.token_ids;
      d.logprobs = u.logprobs;
      c.text += u.text;
      c.token_ids.insert(c.token_ids.end(), u.token_ids.begin(), u.token_ids.end());
      c.logprobs.insert(c.logprobs.end(), u.logprobs.begin(), u.logprobs.end());
      if (u.sample == 0) cached_tokens_[p] = u.num_cached_tokens;
      if (u.output) {
        c.finish_reason = u.output->finish_reason;
        d.finish_reason = u.output->finish_reason;
        c.cache_miss = u.output->cache_miss;
        d.cache_miss = u.output->cache_miss;
        if (u.sample == 0) cached_tokens_[p] = u.output->num_cached_tokens;
        if (u.output->finish_reason == FinishReason::kError) {
          d.error = u.output->error;
          if (error_.empty()) error_ = u.output->error;
        }
      }
      out.push_back(std::move(d));
    }
  }
  return out;
}

void GenerationRun::wait(const std::atomic<bool>& stop) {
  while (!done()) {
    if (stop) abort();
    pull(std::chrono::milliseconds(200));
  }
}

bool GenerationRun::done() const {
  for (const auto& s : streams_)
    if (!s->done()) return false;
  return true;
}

void GenerationRun::abort() {
  for (const auto& s : streams_) s->abort();
}

Usage GenerationRun::usage() const {
  Usage u;
  for (std::size_t p = 0; p < streams_.size(); ++p) {
    u.prompt_tokens += prompt_tokens_[p];
    u.cached_tokens += cached_tokens_[p];
  }
  for (const Choice& c : choices_)
    u.completion_tokens += static_cast<std::int64_t>(c.token_ids.size());
  return u;
}

}  // namespace cachet::serve
