#include "engine/engine_core.h"

#include <fmt/format.h>

#include <algorithm>
#include <cmath>
#include <mutex>
#include <random>

#include "engine/batch_builder.h"
#include "sampling/logits_processors.h"
#include "sampling/sampler.h"
#include "util/log.h"

namespace cachet::engine {
namespace {

std::uint64_t fresh_seed() {
  static std::mutex mutex;
  static std::mt19937_64 gen{std::random_device{}()};
  std::lock_guard lock(mutex);
  return gen();
}

double ms_between(Clock::time_point a, Clock::time_point b) {
  return std::chrono::duration<double, std::milli>(b - a).count();
}

}  // namespace

EngineCore::EngineCore(const EngineConfig& config, const EngineInfo& info, model::ModelConfig model,
                       std::unique_ptr<backend::Backend> backend,
                       std::optional<Tokenizer> tokenizer, const util::Logger& log,
                       std::unique_ptr<kv::DiskTier> disk)
    : config_(config),
      log_(log),
      info_(info),
      model_(std::move(model)),
      backend_(std::move(backend)),
      disk_(std::move(disk)),
      tokenizer_(std::move(tokenizer)),
      kv_(info.num_kv_blocks, info.block_size, config.enable_prefix_caching,
          info.num_host_kv_blocks, config.partial_block_reuse),
      scheduler_({config.max_num_seqs, config.max_num_batched_tokens, config.schedule_policy},
                 kv_) {
  kv_.set_disk_tier(disk_.get());
  kv_.set_pin_budget(static_cast<std::int64_t>(config.max_pinned_fraction *
                                               static_cast<double>(info.num_kv_blocks)));
  kv_.set_host_pin_budget(static_cast<std::int64_t>(config.max_pinned_fraction *
                                                    static_cast<double>(info.num_host_kv_blocks)));
  if (config_.debug_poison_kv) {
    // Every block starts poisoned; from now on each block that returns to the free list is
    // poisoned again before the next forward pass.
    kv_.pool().set_track_freed(true);
    std::vector<std::int32_t> all(static_cast<std::size_t>(info_.num_kv_blocks));
    for (std::size_t i = 0; i < all.size(); ++i) all[i] = static_cast<std::int32_t>(i);
    backend_->poison_blocks(all);
  }
}

std::int32_t num_samples(const SamplingParams& params) {
  return params.n >= 1 && params.n <= kMaxSamples ? params.n : 1;
}

Delivery bare_error(RequestId id, std::int32_t sample_index,
                    std::shared_ptr<RequestCallback> callback, const std::string& why) {
  Delivery d;
  d.callback = std::move(callback);
  d.update.id = id;
  d.update.sample_index = sample_index;
  d.update.finished = true;
  d.output = std::make_unique<RequestOutput>();
  d.output->sample_index = sample_index;
  d.output->finish_reason = FinishReason::kError;
  d.output->error = why;
  d.update.output = d.output.get();
  return d;
}

namespace {

// A chat request's prompt text, or why there is none.
std::string render_chat(const ChatPrompt& chat, const ChatTemplate* chat_template,
                        std::string& problem) {
  if (chat_template == nullptr) {
    problem =
        "a chat request needs the model's chat template, and the model directory has "
        "none that cachet can use (EngineInfo::chat_template_error)";
    return {};
  }
  try {
    return chat_template->render(chat.messages_json, chat.options);
  } catch (const std::exception& e) {
    problem = fmt::format("chat: {}", e.what());
    return {};
  }
}

}  // namespace

std::string tokenize_prompt(Request& r, const Tokenizer* tokenizer,
                            const ChatTemplate* chat_template) {
  if (r.chat) {
    if (!r.prompt.empty() || !r.prompt_token_ids.empty())
      return "give one of prompt, prompt_token_ids or chat, not several";
    if (tokenizer == nullptr)
      return "a chat request needs the model's tokenizer, and the model directory has no "
             "tokenizer.json";
    std::string problem;
    const std::string text = render_chat(*r.chat, chat_template, problem);
    if (!problem.empty()) return problem;
    try {
      r.prompt_token_ids = tokenizer->encode(text, /*add_special_tokens=*/false);
    } catch (const std::exception& e) {
      return fmt::format("the rendered chat could not be tokenized: {}", e.what());
    }
    r.chat.reset();
    if (r.prompt_token_ids.empty()) return "the chat template rendered an empty prompt";
    return {};
  }
  if (!r.prompt_token_ids.empty()) {
    if (!r.prompt.empty()) return "give either prompt (text) or prompt_token_ids, not both";
    return {};
  }
  if (r.prompt.empty()) return "prompt is empty";
  if (tokenizer == nullptr)
    return "a text prompt needs the model's tokenizer, and the model directory has no "
           "tokenizer.json";
  try {
    r.prompt_token_ids = tokenizer->encode(r.prompt, /*add_special_tokens=*/true);
  } catch (const std::exception& e) {
    // A tokenizer.json regex that gives up on the text: this request fails, nothing else.
    return fmt::format("the prompt could not be tokenized: {}", e.what());
  }
  if (r.prompt_token_ids.empty()) return "prompt is empty";
  r.prompt.clear();
  return {};
}

std::string EngineCore::check_request(const Request& r) const {
  const auto& prompt = r.prompt_token_ids;
  if (prompt.empty()) return "prompt is empty";
  for (std::size_t i = 0; i < prompt.size(); ++i) {
    if (prompt[i] < 0 || prompt[i] >= model_.vocab_size)
      return fmt::format("prompt token id {} at position {} is outside the vocabulary [0, {})",
                         prompt[i], i, model_.vocab_size);
  }
  if (static_cast<std::int64_t>(prompt.size()) >= info_.max_model_len)
    return fmt::format(
        "prompt has {} tokens; max_model_len is {}, which leaves no room to generate",
        prompt.size(), info_.max_model_len);
  if (std::string msg = sampling::validate(r.params, model_.vocab_size); !msg.empty()) return msg;
  if (!r.params.stop.empty() && !tokenizer_)
    return "stop strings need the model's tokenizer, and the model directory has no tokenizer.json";
  for (std::size_t i = 0; i < r.params.stop.size(); ++i)
    if (r.params.stop[i].empty()) return fmt::format("stop[{}] is an empty string", i);
  if (r.cache_pin && (r.cache_pin->num_tokens < 0 || !std::isfinite(r.cache_pin->ttl_seconds) ||
                      r.cache_pin->ttl_seconds < 0))
    return fmt::format(
        "cache_pin needs num_tokens >= 0 and a finite ttl_seconds >= 0, got {} and {}",
        r.cache_pin->num_tokens, r.cache_pin->ttl_seconds);
  const std::int64_t blocks =
      (static_cast<std::int64_t>(prompt.size()) + 1 + info_.block_size - 1) / info_.block_size;
  if (blocks > info_.num_kv_blocks)
    return fmt::format("prompt of {} tokens needs {} KV blocks; the cache has {} in all",
                       prompt.size(), blocks, info_.num_kv_blocks);
  return {};
}

void EngineCore::add(RequestId id, Request request, std::shared_ptr<RequestCallback> callback,
                     Clock::time_point submitted, std::string problem) {
  if (problem.empty()) problem = tokenize_prompt(request, tokenizer_ ? &*tokenizer_ : nullptr);
  if (problem.empty()) problem = check_request(request);
  if (!problem.empty()) log_.warn("request {}: {}", id, problem);
  const std::int32_t n = num_samples(request.params);
  for (std::int32_t j = 0; j < n; ++j) {
    Sequence& seq = add_sample(id, j, request, callback, submitted);
    if (problem.empty()) {
      start_sample(seq);
    } else {
      seq.status = SeqStatus::kFinished;
      finish(seq, FinishReason::kError, problem);
    }
  }
}

// Sample `sample_index` of a request, live but not yet scheduled.
Sequence& EngineCore::add_sample(RequestId id, std::int32_t sample_index, const Request& request,
                                 std::shared_ptr<RequestCallback> callback,
                                 Clock::time_point submitted) {
  auto seq = std::make_unique<Sequence>();
  seq->id = id;
  seq->sample_index = sample_index;
  seq->arrival = next_arrival_++;
  seq->submitted = submitted;
  seq->callback = std::move(callback);
  seq->output.sample_index = sample_index;
  seq->output.prompt_token_ids = request.prompt_token_ids;
  seq->params = request.params;
  seq->tokens = request.prompt_token_ids;
  seq->num_prompt_tokens = seq->size();
  seq->kv.salt = request.cache_salt;
  if (sample_index == 0) seq->pin = request.cache_pin;
  Sequence& s = *seq;
  live_.emplace(std::pair{id, sample_index}, std::move(seq));
  return s;
}

// Seeds a valid sample (seed + sample_index: sample 0 draws as n = 1 would) and queues it.
// Only sample 0 computes prompt logprobs; the others reuse the prompt's cached blocks.
void EngineCore::start_sample(Sequence& s) {
  const auto j = static_cast<std::uint64_t>(s.sample_index);
  s.seed = s.params.seed ? *s.params.seed + j : fresh_seed();
  if (s.sample_index > 0) s.params.prompt_logprobs.reset();
  if (tokenizer_)
    s.text = std::make_unique<OutputText>(*tokenizer_, s.params.skip_special_tokens, s.params.stop);
  if (s.params.prompt_logprobs) s.output.prompt_logprobs.resize(s.tokens.size());
  scheduler_.add(&s);
}

bool EngineCore::abort(RequestId id) {
  std::vector<Sequence*> samples;
  for (auto it = live_.lower_bound({id, 0}); it != live_.end() && it->first.first == id; ++it)
    samples.push_back(it->second.get());
  for (Sequence* seq : samples) finish(*seq, FinishReason::kAborted);
  return !samples.empty();
}

Delivery EngineCore::take_new_tokens(Sequence& seq) {
  Delivery d;
  d.callback = seq.callback;
  d.update.id = seq.id;
  d.update.sample_index = seq.sample_index;
  d.update.new_token_ids.assign(
      seq.tokens.begin() + seq.num_prompt_tokens + static_cast<std::ptrdiff_t>(seq.num_reported),
      seq.tokens.end());
  if (seq.output.logprobs.size() > seq.num_reported)
    d.update.new_logprobs.assign(
        seq.output.logprobs.begin() + static_cast<std::ptrdiff_t>(seq.num_reported),
        seq.output.logprobs.end());
  seq.num_reported = static_cast<std::size_t>(seq.num_generated());
  d.update.num_cached_tokens = seq.output.num_cached_tokens;
  return d;
}

void EngineCore::report_tokens(Sequence& seq) {
  if (static_cast<std::size_t>(seq.num_generated()) == seq.num_reported) return;
  Delivery d = take_new_tokens(seq);
  if (seq.text) d.update.new_text = seq.text->take_ready();
  deliveries_.push_back(std::move(d));
}

void EngineCore::finish(Sequence& seq, FinishReason reason, std::string error) {
  scheduler_.finish(&seq);  // releases its blocks; a no-op for one that never got any
  deliveries_.push_back(final_delivery(seq, reason, std::move(error)));
  ++num_finished_;
  live_.erase({seq.id, seq.sample_index});  // destroys seq
}

Delivery EngineCore::final_delivery(Sequence& seq, FinishReason reason, std::string error) {
  const auto now = Clock::now();
  Delivery d = take_new_tokens(seq);
  d.update.finished = true;
  d.output = std::make_unique<RequestOutput>(std::move(seq.output));
  d.output->finish_reason = reason;
  d.output->error = std::move(error);
  d.output->token_ids.assign(seq.tokens.begin() + seq.num_prompt_tokens, seq.tokens.end());
  if (seq.text) {
    d.update.new_text = seq.text->finish();
    d.output->text = seq.text->text();
    // An aborted request stays aborted (the contract of destruction and abort()).
    if (!seq.text->error().empty() &&
        (reason == FinishReason::kLength || reason == FinishReason::kStop)) {
      d.output->finish_reason = FinishReason::kError;
      d.output->error = "decoding the generated text failed: " + seq.text->error();
    }
  }
  if (seq.first_token_at) {
    d.output->ttft_ms = ms_between(seq.submitted, *seq.first_token_at);
    d.output->decode_ms = ms_between(*seq.first_token_at, now);
  }
  d.update.output = d.output.get();
  return d;
}

void EngineCore::abandon(const std::string& why) {
  for (auto& [key, seq] : live_) {
    try {
      deliveries_.push_back(final_delivery(*seq, FinishReason::kError, why));
    } catch (...) {
      // Even the output cannot be put together: the final update carries the reason alone.
      deliveries_.push_back(bare_error(key.first, key.second, seq->callback, why));
    }
    ++num_finished_;
  }
  live_.clear();  // the scheduler's pointers dangle now: this core runs nothing more
}

void EngineCore::step() {
  run_step();
  // Whichever way the step ended: one that failed its forward pass released blocks too.
  if (config_.check_kv_integrity) check_integrity();
}

void EngineCore::run_step() {
  kv_.set_time(std::chrono::duration<double>(Clock::now().time_since_epoch()).count());
  if (disk_) kv_.finish_disk_jobs(disk_->take_done());
  Step step = scheduler_.schedule();
  run_transfers();  // whatever the step runs: its schedule may have evicted blocks
  for (Sequence* seq : step.unservable) {
    finish(
        *seq, FinishReason::kError,
        fmt::format("needs more KV blocks than the cache has ({} blocks of {} tokens) at {} tokens",
                    info_.num_kv_blocks, info_.block_size, seq->size() + 1));
  }
  if (step.empty()) {
    if (kv_.num_disk_reads() > 0) {
      // Everything that could run waits for the disk tier: wait for it (briefly, so that new
      // requests and aborts are not held up long).
      disk_->wait_done(std::chrono::milliseconds(20));
      return;
    }
    if (step.unservable.empty() && scheduler_.has_work()) {
      // Nothing can run although requests remain: a scheduler bug, reported per request.
      std::vector<Sequence*> stuck;
      for (auto& [id, seq] : live_) stuck.push_back(seq.get());
      for (Sequence* seq : stuck)
        finish(*seq, FinishReason::kError, std::string("internal error: the scheduler stalled"));
    }
    return;
  }
  ++num_steps_;
  peak_in_use_ = std::max(peak_in_use_, kv_.pool().num_in_use());
  BuiltBatch built = build_batch(step, info_.block_size);
  const bool on_device = sample_on_device(built);
  try {
    if (on_device) {
      build_sample_specs(built);
      backend_->forward_sample(built.batch, specs_, sampled_);
    } else {
      backend_->forward(built.batch, logits_);
    }
  } catch (const backend::FatalBackendError&) {
    throw;  // the backend cannot run anything more: the engine fails
  } catch (const std::exception& e) {
    // A failure of this step alone (e.g. a workspace that does not fit): its requests fail.
    for (const auto& s : step.seqs)
      finish(*s.seq, FinishReason::kError, fmt::format("forward pass failed: {}", e.what()));
    return;
  }
  if (config_.debug_poison_kv) {
    if (const auto row = first_nonfinite_row(on_device)) {
      const std::string why = fmt::format(
          "debug_poison_kv: logits row {} is not finite: the step read K/V that its block "
          "table does not vouch for (a poisoned block)",
          *row);
      log_.error("{}", why);
      for (const auto& s : step.seqs) finish(*s.seq, FinishReason::kError, why);
      return;
    }
  }
  scheduler_.commit(step);
  for (const auto& s : step.seqs) apply_pin(*s.seq);

  const auto vocab = static_cast<std::size_t>(model_.vocab_size);
  for (std::size_t row = 0; row < built.uses.size(); ++row) {
    const LogitsUse& use = built.uses[row];
    Sequence& seq = *use.seq;
    TokenId token = 0;
    if (on_device) {
      const backend::SampledToken& r = sampled_[row];
      token = r.token;
      if (seq.params.logprobs) {
        // top_logprobs()' shape: the top k, then the chosen token when not among them.
        std::vector<TokenLogprob> list;
        bool has_token = false;
        for (std::size_t i = 0; i < r.top_ids.size(); ++i) {
          list.push_back({r.top_ids[i], r.top_logprobs[i]});
          has_token = has_token || r.top_ids[i] == token;
        }
        if (!has_token) list.push_back({token, r.logprob});
        seq.output.logprobs.push_back(std::move(list));
      }
    } else {
      std::span<const float> logits(logits_.data() + row * vocab, vocab);
      if (use.kind == LogitsUse::Kind::kPromptLogprob) {
        const TokenId next = seq.tokens[static_cast<std::size_t>(use.position + 1)];
        seq.output.prompt_logprobs[static_cast<std::size_t>(use.position + 1)] =
            sampling::top_logprobs(logits, *seq.params.prompt_logprobs, next);
        continue;
      }
      token = sample_on_host(seq, logits);
      if (seq.params.logprobs)
        seq.output.logprobs.push_back(sampling::top_logprobs(logits, *seq.params.logprobs, token));
    }
    seq.tokens.push_back(token);
    if (!seq.first_token_at) seq.first_token_at = Clock::now();
    const auto& eos = model_.eos_token_ids;
    const auto& stops = seq.params.stop_token_ids;
    const bool stop_string = seq.text && seq.text->push(token);
    if (seq.text && !seq.text->error().empty()) {
      finish(seq, FinishReason::kError, "decoding the generated text failed: " + seq.text->error());
      continue;
    }
    if (stop_string ||
        (!seq.params.ignore_eos && std::find(eos.begin(), eos.end(), token) != eos.end()) ||
        std::find(stops.begin(), stops.end(), token) != stops.end()) {
      finish(seq, FinishReason::kStop);
    } else if (seq.num_generated() >= seq.params.max_tokens || seq.size() >= info_.max_model_len) {
      finish(seq, FinishReason::kLength);
    } else {
      report_tokens(seq);
    }
  }
}

// The copies the schedule queued: the host tier's saves and loads, with debug_poison_kv's
// poisoning between the saves (which read blocks that eviction freed) and the loads (which
// fill blocks handed out again), then partial-block reuse's prefix copies (which may read a
// block loaded just before). A failed copy leaves blocks without their K/V: the engine
// cannot go on.
void EngineCore::run_transfers() {
  kv::Transfers transfers = kv_.take_transfers();
  auto copies = [](const std::vector<kv::BlockTransfer>& list) {
    std::vector<backend::HostCopy> out;
    for (const kv::BlockTransfer& t : list) out.push_back({t.device.value, t.host_slot});
    return out;
  };
  try {
    if (!transfers.saves.empty()) backend_->save_blocks(copies(transfers.saves));
    if (config_.debug_poison_kv) {
      // Blocks freed since the last step (possibly handed out again by this one's schedule,
      // before anything is written to them).
      std::vector<std::int32_t> freed;
      for (kv::BlockId id : kv_.pool().take_freed()) freed.push_back(id.value);
      if (!freed.empty()) backend_->poison_blocks(freed);
    }
    if (!transfers.loads.empty()) backend_->load_blocks(copies(transfers.loads));
    if (!transfers.prefix_copies.empty()) {
      std::vector<backend::BlockPrefixCopy> prefixes;
      for (const kv::PrefixCopy& c : transfers.prefix_copies)
        prefixes.push_back({c.from.value, c.to.value, c.num_tokens});
      backend_->copy_block_prefixes(prefixes);
    }
    queue_disk_jobs(transfers);
  } catch (const backend::FatalBackendError&) {
    throw;
  } catch (const std::exception& e) {
    throw Error(
        ErrorCode::kInternal,
        fmt::format("copying KV blocks (host tier or partial-block reuse) failed: {}", e.what()));
  }
}

// The disk tier's jobs of this step, once the copies are done with the host slots they use:
// the writes of blocks just saved, the reads into reserved slots. A write the tier does not
// take releases its slot at once.
void EngineCore::queue_disk_jobs(kv::Transfers& transfers) {
  if (transfers.disk_writes.empty() && transfers.disk_reads.empty()) return;
  backend_->wait_for_copies();
  kv::DiskDone refused;
  for (kv::DiskWrite& w : transfers.disk_writes) {
    w.payload = backend_->host_slot(w.slot);
    const std::int64_t slot = w.slot;
    if (!disk_->write(std::move(w))) refused.written_slots.push_back(slot);
  }
  for (std::size_t i = 0; i < transfers.disk_reads.size(); ++i) {
    kv::DiskRead& r = transfers.disk_reads[i];
    for (std::int64_t slot : transfers.disk_read_slots[i])
      r.payloads.push_back(backend_->host_slot(slot));
    disk_->read(std::move(r));
  }
  kv_.finish_disk_jobs(refused);
}

// A request's cache pin, once its prompt's blocks are computed and registered.
void EngineCore::apply_pin(Sequence& seq) {
  if (!seq.pin || seq.num_computed < seq.num_prompt_tokens) return;
  const CachePin pin = *std::exchange(seq.pin, std::nullopt);
  if (!kv_.caching_enabled()) {
    seq.output.pin_error = "prefix caching is off: nothing can be pinned";
    return;
  }
  const std::int32_t tokens = pin.num_tokens > 0 && pin.num_tokens < seq.num_prompt_tokens
                                  ? pin.num_tokens
                                  : seq.num_prompt_tokens;
  const kv::PinResult r = kv_.pin_prefix(seq.kv, tokens / info_.block_size, pin.ttl_seconds);
  seq.output.num_pinned_tokens = r.num_blocks * info_.block_size;
  seq.output.pin_error = r.error;
  if (!r.error.empty()) log_.warn("request {}: cache_pin refused: {}", seq.id, r.error);
}

// Backends that sample next to the logits do so unless a row wants prompt logprobs (the
// logprob of a given token, which only the host path computes).
bool EngineCore::sample_on_device(const BuiltBatch& built) const {
  if (!backend_->samples_on_device()) return false;
  for (const LogitsUse& use : built.uses)
    if (use.kind == LogitsUse::Kind::kPromptLogprob) return false;
  return true;
}

// specs_ for forward_sample: each row's sampling parameters, its place in its random stream,
// and its logits edits (the same logit_edits() the host path applies).
void EngineCore::build_sample_specs(const BuiltBatch& built) {
  specs_.resize(built.uses.size());
  edits_.clear();
  std::vector<std::size_t>& first_edit = first_edit_;
  first_edit.resize(built.uses.size() + 1);
  for (std::size_t row = 0; row < built.uses.size(); ++row) {
    const Sequence& seq = *built.uses[row].seq;
    const SamplingParams& p = seq.params;
    first_edit[row] = edits_.size();
    if (sampling::processes_logits(p, seq.num_generated()))
      sampling::logit_edits(p, history(seq), model_.vocab_size, edits_);
    specs_[row] = {p.temperature,
                   p.top_k,
                   p.top_p,
                   p.min_p,
                   seq.seed,
                   static_cast<std::uint64_t>(seq.num_generated()),
                   p.logprobs ? *p.logprobs : -1,
                   {}};
  }
  first_edit.back() = edits_.size();
  // Spans only now: edits_ may have moved while it grew.
  const std::span<const sampling::LogitEdit> all(edits_);
  for (std::size_t row = 0; row < built.uses.size(); ++row)
    specs_[row].edits = all.subspan(first_edit[row], first_edit[row + 1] - first_edit[row]);
}

sampling::TokenHistory EngineCore::history(const Sequence& seq) const {
  const std::span<const TokenId> all(seq.tokens);
  const auto prompt = static_cast<std::size_t>(seq.num_prompt_tokens);
  return {all.first(prompt), all.subspan(prompt), model_.eos_token_ids};
}

// The token for `seq` from its raw logits row: processed (logits_processors.h) in a copy
// when the request asks for it, so that logprobs stay those of the raw logits.
TokenId EngineCore::sample_on_host(const Sequence& seq, std::span<const float> logits) {
  const auto counter = static_cast<std::uint64_t>(seq.num_generated());
  if (!sampling::processes_logits(seq.params, seq.num_generated()))
    return sampling::sample(logits, seq.params, seq.seed, counter);
  processed_.assign(logits.begin(), logits.end());
  sampling::process_logits(processed_, seq.params, history(seq));
  return sampling::sample(processed_, seq.params, seq.seed, counter);
}

std::optional<std::size_t> EngineCore::first_nonfinite_row(bool on_device) const {
  if (on_device) {
    // The device sampler counts them (it would otherwise sample a NaN row as if -inf).
    for (std::size_t row = 0; row < sampled_.size(); ++row)
      if (sampled_[row].num_nonfinite > 0) return row;
    return std::nullopt;
  }
  for (std::size_t i = 0; i < logits_.size(); ++i)
    if (!std::isfinite(logits_[i])) return i / static_cast<std::size_t>(model_.vocab_size);
  return std::nullopt;
}

void EngineCore::check_integrity() {
  kv_.check_integrity(scheduler_.block_tables());  // throws Error(kInternal) on a violation
  ++integrity_checks_;
}

std::vector<Delivery> EngineCore::take_deliveries() { return std::exchange(deliveries_, {}); }

EngineStats EngineCore::stats() const {
  EngineStats s;
  const CacheCounters& c = scheduler_.counters();
  s.prefix_cache_query_tokens = c.query_tokens;
  s.prefix_cache_hit_tokens = c.hit_tokens;
  s.prefix_cache_query_blocks = c.query_blocks;
  s.prefix_cache_hit_blocks = c.hit_blocks;
  s.prefix_cache_hit_rate =
      c.query_tokens > 0 ? static_cast<double>(c.hit_tokens) / c.query_tokens : 0.0;
  s.prefix_cache_host_hit_tokens = c.host_hit_tokens;
  s.prefix_cache_partial_hit_tokens = c.partial_hit_tokens;
  s.prefix_cache_misses = c.misses;
  s.host_blocks_used = kv_.host_tier().num_used();
  s.host_blocks_stored = kv_.host_counters().blocks_stored;
  s.host_blocks_loaded = kv_.host_counters().blocks_loaded;
  s.host_evictions = kv_.host_tier().num_evictions();
  s.prefix_cache_disk_hit_tokens = c.disk_hit_tokens;
  if (disk_) {
    const kv::DiskTierCounters d = disk_->counters();
    s.disk_blocks_written = d.blocks_written;
    s.disk_blocks_read = d.blocks_read;
    s.disk_read_failures = d.read_failures;
    s.disk_write_failures = d.write_failures;
    s.disk_writes_dropped = d.writes_dropped + kv_.host_counters().disk_writes_skipped;
    s.disk_evictions = d.evictions;
    s.disk_blocks_used = d.records;
    s.disk_bytes_used = d.bytes;
  }
  s.blocks_free = kv_.pool().num_free();
  s.blocks_cached = kv_.pool().num_cached();
  s.blocks_in_use = kv_.pool().num_in_use();
  s.peak_blocks_in_use = peak_in_use_;
  s.blocks_pinned = kv_.pool().num_pinned();
  s.host_blocks_pinned = kv_.host_tier().num_pinned();
  s.evictions = kv_.pool().num_evictions();
  s.preemptions = c.preemptions;
  s.num_running = static_cast<std::int64_t>(scheduler_.num_running());
  s.num_waiting = static_cast<std::int64_t>(scheduler_.num_waiting());
  s.num_steps = num_steps_;
  s.num_finished = num_finished_;
  s.integrity_checks = integrity_checks_;
  return s;
}

}  // namespace cachet::engine
