// The engine's single-threaded core: requests in, steps run, updates out. Engine wraps it in
// a background thread; tests may drive it directly.
#pragma once

#include <map>
#include <memory>
#include <optional>
#include <utility>
#include <vector>

#include "backend/backend.h"
#include "cachet/engine.h"
#include "engine/batch_builder.h"
#include "engine/scheduler.h"
#include "engine/sequence.h"
#include "kv/kv_cache_manager.h"
#include "model/model_config.h"
#include "sampling/logits_processors.h"
#include "util/log.h"

namespace cachet::engine {

// Turns a text prompt (or a chat, rendered with `chat_template` first) into
// r.prompt_token_ids with `tokenizer` (null: the model has none) and clears r.prompt and
// r.chat; leaves a token-id prompt alone. Returns why the request cannot run ("" when it
// can). Never throws for a bad prompt: a tokenizer or template failure is returned too.
// Engine::submit calls it on the caller's thread, so a long prompt holds up only its caller.
std::string tokenize_prompt(Request& r, const Tokenizer* tokenizer,
                            const ChatTemplate* chat_template = nullptr);

// How many samples, each with its own final update, a request with `params` has:
// params.n, or 1 when n is invalid (the request then fails as one).
std::int32_t num_samples(const SamplingParams& params);

// An update ready to hand to a request's callback; owns everything it points to.
struct Delivery {
  std::shared_ptr<RequestCallback> callback;
  RequestUpdate update;
  std::unique_ptr<RequestOutput> output;  // set when update.finished
};

// A final update that carries nothing but FinishReason::kError and `why`: for a request
// whose output cannot be put together (the engine failed).
Delivery bare_error(RequestId id, std::int32_t sample_index,
                    std::shared_ptr<RequestCallback> callback, const std::string& why);

class EngineCore {
 public:
  // `log` must outlive the core. `disk`: the prefix cache's disk tier, or null.
  EngineCore(const EngineConfig& config, const EngineInfo& info, model::ModelConfig model,
             std::unique_ptr<backend::Backend> backend, std::optional<Tokenizer> tokenizer,
             const util::Logger& log, std::unique_ptr<kv::DiskTier> disk = nullptr);

  // Takes a request, as num_samples() sequences; a bad one is finished at once (each sample)
  // with FinishReason::kError, as is one
  // with a non-empty `problem` (found before it got here: tokenize_prompt's result). A text
  // prompt is tokenized here (on this thread) unless the caller did it.
  void add(RequestId id, Request request, std::shared_ptr<RequestCallback> callback,
           Clock::time_point submitted, std::string problem = {});
  // Finishes every live sample of a request with FinishReason::kAborted; false when none is
  // live.
  bool abort(RequestId id);
  bool has_work() const { return scheduler_.has_work(); }
  // Runs one step: schedule, forward, sample, stop checks, cache commits; then, with
  // EngineConfig::check_kv_integrity, the KV block-accounting check. Throws when the engine
  // cannot go on (a broken invariant, a backend::FatalBackendError, an unexpected exception);
  // a forward pass that fails otherwise fails only the step's requests.
  void step();
  // After step() or add() threw: finishes every live request with FinishReason::kError and
  // `why` without touching the KV cache (whose state is not to be trusted), so each still
  // gets its final update from take_deliveries(). The core runs nothing afterwards.
  void abandon(const std::string& why);
  // Updates produced since the last call, in order.
  std::vector<Delivery> take_deliveries();
  EngineStats stats() const;
  // The KV block pool, for tests that corrupt it on purpose.
  kv::BlockPool& block_pool_for_testing() { return kv_.pool(); }

 private:
  std::string check_request(const Request& r) const;
  Sequence& add_sample(RequestId id, std::int32_t sample_index, const Request& request,
                       std::shared_ptr<RequestCallback> callback, Clock::time_point submitted);
  void start_sample(Sequence& seq);
  void finish(Sequence& seq, FinishReason reason, std::string error = {});
  Delivery final_delivery(Sequence& seq, FinishReason reason, std::string error);
  Delivery take_new_tokens(Sequence& seq);
  void report_tokens(Sequence& seq);
  void run_step();
  void run_transfers();
  void queue_disk_jobs(kv::Transfers& transfers);
  void apply_pin(Sequence& seq);
  bool sample_on_device(const BuiltBatch& built) const;
  void build_sample_specs(const BuiltBatch& built);
  sampling::TokenHistory history(const Sequence& seq) const;
  TokenId sample_on_host(const Sequence& seq, std::span<const float> logits);
  // debug_poison_kv: the first logits row of the last forward pass with a NaN or +-inf.
  std::optional<std::size_t> first_nonfinite_row(bool on_device) const;
  void check_integrity();

  EngineConfig config_;
  const util::Logger& log_;
  EngineInfo info_;
  model::ModelConfig model_;
  std::unique_ptr<backend::Backend> backend_;
  // Its I/O thread reads and writes the backend's host slots: destroyed (joined) before it.
  std::unique_ptr<kv::DiskTier> disk_;
  std::optional<Tokenizer> tokenizer_;
  kv::KvCacheManager kv_;
  Scheduler scheduler_;
  // Keyed by (request id, sample index): a request's samples are adjacent.
  std::map<std::pair<RequestId, std::int32_t>, std::unique_ptr<Sequence>> live_;
  std::vector<Delivery> deliveries_;
  std::vector<float> logits_;                   // [rows, vocab] of the last step (host sampling)
  std::vector<float> processed_;                // [vocab] one row after logits processing
  std::vector<backend::SampleSpec> specs_;      // per logits row (device sampling)
  std::vector<sampling::LogitEdit> edits_;      // the rows' logits edits (device sampling)
  std::vector<std::size_t> first_edit_;         // per row: where its edits start in edits_
  std::vector<backend::SampledToken> sampled_;  // per logits row (device sampling)
  std::uint64_t next_arrival_ = 0;
  std::int64_t num_steps_ = 0, num_finished_ = 0, peak_in_use_ = 0, integrity_checks_ = 0;
};

}  // namespace cachet::engine
