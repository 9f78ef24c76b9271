// cachet — the Engine: build it once from a model directory, then generate.
//
//   cachet::EngineConfig config;
//   config.model_dir = "models/qwen3-tiny";
//   cachet::Engine engine(config);              // throws cachet::Error naming the problem
//   cachet::SamplingParams params;
//   params.max_tokens = 32;
//   auto outputs = engine.generate({{1, 2, 3}, {1, 2, 4}}, params);
//
// Every call is thread-safe. A background thread runs the engine's steps; generate() and
// submit() from any number of threads are batched together.
//
// The engine never takes its host process down: a bad request fails alone, and a bug or a
// device fault on the engine's thread (a broken KV-cache invariant, an unexpected exception,
// a sticky CUDA error) puts the engine in a failed state instead: every live request gets
// its final update with FinishReason::kError and the reason, later submit() and generate()
// throw Error(ErrorCode::kEngineFailed), and health() says why. Build a new Engine to go on.
//
// Callbacks run on the engine's own thread, one at a time. Inside one, you may call
// submit(), abort(), stats(), health(), info() and tokenizer(), and destroy the Engine (it
// then finishes shutting down once the callback returns; don't touch it afterwards).
// generate() there throws Error(kInvalidArgument): it would wait for the thread running it.
// A callback that throws is logged and otherwise ignored. A slow callback delays every
// request of the engine.
#pragma once

#include <array>
#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "cachet/chat.h"
#include "cachet/config.h"
#include "cachet/errors.h"
#include "cachet/sampling.h"
#include "cachet/tokenizer.h"
#include "cachet/types.h"
#include "cachet/version.h"

namespace cachet {

namespace engine {
struct EngineTestAccess;  // test hooks (fault injection); not part of the API
}

// One token with its log-probability.
struct TokenLogprob {
  TokenId id = 0;
  float logprob = 0.0f;
};

// Keep a request's prompt prefix cached for a while (like a hosted API's cache_control). The
// prefix's KV blocks are pinned for `ttl_seconds` once the prompt has been computed, and
// every later hit on them extends the pin by its TTL: pinned blocks are evicted from the KV
// cache only when no unpinned cached block is left, and after the TTL they are ordinary
// cached blocks again. Pins are bounded by EngineConfig::max_pinned_fraction; a pin that
// does not fit is refused (RequestOutput::pin_error), the request runs as usual.
struct CachePin {
  // Prompt tokens to keep, from the start, in whole KV blocks (rounded down); 0 or more than
  // the prompt: all of its whole blocks.
  std::int32_t num_tokens = 0;
  // Seconds; 0 unpins the prefix instead (ends the pins of its blocks now).
  double ttl_seconds = 300.0;
};

// One request: a prompt and its sampling parameters. The prompt is either token ids or
// text, which the model's tokenizer encodes with its special tokens (e.g. Llama's BOS), as
// Hugging Face's tokenizer(text) does.
// A conversation to continue, as a prompt: rendered with the model's chat template
// (Engine::chat_template()), then tokenized without the tokenizer's own special tokens (the
// template writes them), as transformers' apply_chat_template() and vLLM's chat API do.
struct ChatPrompt {
  std::string messages_json;  // a JSON array of messages: role, content, tool_calls, ...
  ChatRenderOptions options;  // generation prompt, tools, extra template variables
};

struct Request {
  std::vector<TokenId> prompt_token_ids;
  SamplingParams params;
  // Requests share cached K/V only when their salts are equal (tenant isolation). Empty is a
  // salt like any other.
  std::string cache_salt;
  std::string prompt;  // text, used when prompt_token_ids is empty (giving both is an error)
  std::optional<CachePin> cache_pin;
  // Instead of prompt or prompt_token_ids (giving two of them is an error).
  std::optional<ChatPrompt> chat;
};

// Identifies a submitted request; unique for the engine's lifetime.
using RequestId = std::uint64_t;

// What one sample of a request produced (a request has SamplingParams::n samples).
struct RequestOutput {
  // Which sample of its request this is, in [0, SamplingParams::n).
  std::int32_t sample_index = 0;
  std::vector<TokenId> prompt_token_ids;
  // Generated token ids (including a final EOS / stop token when one ended the request).
  std::vector<TokenId> token_ids;
  // The generated text, when the model directory has a tokenizer (cut before a stop
  // string; special tokens left out unless SamplingParams::skip_special_tokens is false).
  std::string text;
  // One entry per generated token when SamplingParams::logprobs is set: the top-k
  // tokens by log-probability, descending, plus the sampled token if it is not among them.
  std::vector<std::vector<TokenLogprob>> logprobs;
  // One entry per prompt position when SamplingParams::prompt_logprobs is set; entry 0 is
  // empty (std::nullopt): nothing predicts the first token. Only sample 0 has them (the
  // other samples then reuse the prompt's cached blocks instead of recomputing them).
  std::vector<std::optional<std::vector<TokenLogprob>>> prompt_logprobs;
  FinishReason finish_reason = FinishReason::kLength;
  // Why the request failed (FinishReason::kError); empty otherwise.
  std::string error;
  // Prompt tokens whose K/V came from the prefix cache instead of being computed.
  std::int32_t num_cached_tokens = 0;
  // Why the cache served no more than that (docs/prefix_caching.md, "Why a request missed").
  CacheMiss cache_miss;
  // With Request::cache_pin: the prompt tokens pinned (whole blocks), or why none were.
  std::int32_t num_pinned_tokens = 0;
  std::string pin_error;
  // From submission to the first step that scheduled it (time spent waiting), milliseconds;
  // 0 when it never was.
  double queue_ms = 0.0;
  // From submission to the first generated token, milliseconds.
  double ttft_ms = 0.0;
  // From the first to the last generated token, milliseconds.
  double decode_ms = 0.0;
};

// What the callback of a submitted request receives, for each of its samples: each new
// token as it is generated, then exactly once a final update with the sample's whole output.
// A request with SamplingParams::n samples gets n final updates, one per sample_index.
struct RequestUpdate {
  RequestId id = 0;
  std::int32_t sample_index = 0;
  // Tokens generated since the previous update (empty in a final update that adds none).
  std::vector<TokenId> new_token_ids;
  // With SamplingParams::logprobs: the logprobs of new_token_ids, one entry each (as
  // RequestOutput::logprobs).
  std::vector<std::vector<TokenLogprob>> new_logprobs;
  // Prompt tokens the prefix cache served (RequestOutput::num_cached_tokens), known from the
  // first update on.
  std::int32_t num_cached_tokens = 0;
  // Text generated since the previous update: whole UTF-8 characters only, and text that
  // could still turn out to be the start of a stop string is held back until it cannot.
  // The pieces of all updates concatenate to RequestOutput::text.
  std::string new_text;
  bool finished = false;
  // The complete output when `finished`, else nullptr. Valid during the call only.
  const RequestOutput* output = nullptr;
};

// Called on the engine's thread (see the rules at the top of this file). Keep it short.
using RequestCallback = std::function<void(const RequestUpdate&)>;

// Counters since the engine was built, and the state of its KV cache now.
struct EngineStats {
  // Prefix cache: every request's prompt counts once, at its first admission.
  std::int64_t prefix_cache_query_tokens = 0;
  std::int64_t prefix_cache_hit_tokens = 0;
  std::int64_t prefix_cache_query_blocks = 0;  // full prompt blocks
  std::int64_t prefix_cache_hit_blocks = 0;
  double prefix_cache_hit_rate = 0.0;  // hit_tokens / query_tokens, 0 when no queries
  // Host-memory tier: of prefix_cache_hit_tokens, those loaded from it (the rest were in
  // the KV cache); blocks it holds now; blocks copied into it (demoted by an eviction of the
  // KV cache) and out of it (loaded for a hit); its own evictions (least recently used).
  std::int64_t prefix_cache_host_hit_tokens = 0;
  // Of prefix_cache_hit_tokens, those copied from a cached block that matched only partly
  // (EngineConfig::partial_block_reuse).
  std::int64_t prefix_cache_partial_hit_tokens = 0;
  // Requests (each sample's first admission) by why their cached prefix ended
  // (RequestOutput::cache_miss), indexed by CacheMissReason.
  std::array<std::int64_t, kNumCacheMissReasons> prefix_cache_misses{};
  std::int64_t host_blocks_used = 0;
  std::int64_t host_blocks_stored = 0;
  std::int64_t host_blocks_loaded = 0;
  std::int64_t host_evictions = 0;
  // Disk tier (EngineConfig::kv_cache_dir): of prefix_cache_hit_tokens, those read from it
  // (through the host tier; not counted in prefix_cache_host_hit_tokens); records written and
  // read (verified) so far; records found but unusable (corrupt or truncated: removed, and
  // the blocks computed; or unreadable); writes that failed (a full disk, a read-only
  // directory) or were not even queued (the tier's queue or the host tier was full); records
  // removed for disk_kv_cache_bytes; and the records and bytes the engine knows in its
  // directory now.
  std::int64_t prefix_cache_disk_hit_tokens = 0;
  std::int64_t disk_blocks_written = 0;
  std::int64_t disk_blocks_read = 0;
  std::int64_t disk_read_failures = 0;
  std::int64_t disk_write_failures = 0;
  std::int64_t disk_writes_dropped = 0;
  std::int64_t disk_evictions = 0;
  std::int64_t disk_blocks_used = 0;
  std::int64_t disk_bytes_used = 0;
  // KV blocks by state: free + cached + in_use = EngineInfo::num_kv_blocks.
  std::int64_t blocks_free = 0;
  std::int64_t blocks_cached = 0;  // unreferenced, kept for reuse, evictable
  std::int64_t blocks_in_use = 0;
  std::int64_t peak_blocks_in_use = 0;
  std::int64_t blocks_pinned = 0;       // KV blocks held by prefix pins (Request::cache_pin) now
  std::int64_t host_blocks_pinned = 0;  // host-tier entries that kept a demoted block's pin
  std::int64_t evictions = 0;
  std::int64_t preemptions = 0;
  std::int64_t num_running = 0;
  std::int64_t num_waiting = 0;
  std::int64_t num_steps = 0;
  std::int64_t num_finished = 0;
  // KV block-accounting checks run (every block free, cached or referenced exactly as the
  // block tables say; a failed one fails the engine): one after every step with
  // EngineConfig::check_kv_integrity, else 0. Equal to num_steps unless a step ran no
  // forward pass (one that only failed unservable requests).
  std::int64_t integrity_checks = 0;
};

// Whether an engine can still run requests.
struct EngineHealth {
  bool ok = true;
  // Why the engine failed when !ok, e.g. "engine failed: KV block pool integrity violated:
  // ref count differs from block-table references (block 7)".
  std::string error;
};

// Facts about a built engine: the values actually chosen.
struct EngineInfo {
  std::string architecture;  // e.g. "Qwen3ForCausalLM"
  std::string backend;       // "cpu" or "cuda"
  // The CPU backend's kernels: "avx512", "avx2" or "generic", the best this build and CPU
  // can run unless the environment variable CACHET_CPU_ISA names a lower one; empty on
  // "cuda".
  std::string cpu_isa;
  std::int32_t vocab_size = 0;
  std::int32_t num_layers = 0;
  std::int32_t block_size = 0;
  std::int64_t num_kv_blocks = 0;
  std::int64_t kv_cache_bytes = 0;
  // The prefix cache's host-memory tier (EngineConfig::host_kv_cache_bytes): KV blocks it
  // holds and their bytes; 0 when off.
  std::int64_t num_host_kv_blocks = 0;
  std::int64_t host_kv_cache_bytes = 0;
  // The disk tier (EngineConfig::kv_cache_dir): the directory its records of this model are
  // in (kv_cache_dir/cachet-kv-<fingerprint>), and whether it can write there; empty and
  // false when off.
  std::string disk_kv_cache_dir;
  bool disk_kv_cache_writable = false;
  std::int32_t max_model_len = 0;
  std::int32_t max_num_seqs = 0;
  std::int32_t max_num_batched_tokens = 0;
  std::int32_t num_threads = 0;
  std::vector<TokenId> eos_token_ids;
  bool prefix_caching = true;
  // Whether the model directory has a chat template cachet can render
  // (Engine::chat_template()); when it has one that cannot be parsed, why not.
  bool has_chat_template = false;
  std::string chat_template_error;
};

class CACHET_API Engine {
 public:
  // Loads the model and allocates the KV cache. Throws cachet::Error.
  explicit Engine(const EngineConfig& config);
  // Ends every live request with FinishReason::kAborted (each callback gets its final
  // update) and stops the engine's thread. Never throws; may be called from a callback.
  ~Engine();
  // Every call on a moved-from Engine throws Error(kUnavailable).
  Engine(Engine&&) noexcept;
  Engine& operator=(Engine&&) noexcept;
  Engine(const Engine&) = delete;
  Engine& operator=(const Engine&) = delete;

  // Queues a request and returns: at once for token ids; a text prompt is tokenized first,
  // on the calling thread, so a long text holds up its caller only, never the engine's
  // thread or other requests. `callback` receives its tokens as they come and a final
  // update (finished) exactly once per sample (SamplingParams::n of them; one when n itself
  // is invalid): with FinishReason::kError for a bad request (a prompt that cannot be
  // tokenized included), kAborted when aborted or when the engine is destroyed first.
  // Thread-safe. Throws Error(kEngineFailed) once the engine has failed.
  RequestId submit(Request request, RequestCallback callback);
  // Cancels a request (every sample still running); their final updates follow on the
  // engine's thread. False when the id is unknown or every sample has already finished. True
  // means the request was still live, not that it ends kAborted: one that completes in the
  // step already running finishes with its own reason (the soak test sees this a few dozen
  // times in 10,000). Thread-safe.
  bool abort(RequestId id);

  // Runs every request to completion, batched together with whatever else is running,
  // and returns one output per sample in input order: request i's SamplingParams::n
  // samples follow each other, by sample_index (one output for a request whose n is
  // invalid; it fails with kError). A bad request fails alone
  // (FinishReason::kError). Thread-safe; built on submit(). Throws Error(kEngineFailed)
  // once the engine has failed (requests in flight when it fails come back kError), and
  // Error(kInvalidArgument) when called from a callback.
  std::vector<RequestOutput> generate(const std::vector<Request>& requests);
  // The same sampling parameters for every prompt.
  std::vector<RequestOutput> generate(const std::vector<std::vector<TokenId>>& prompts,
                                      const SamplingParams& params);

  const EngineInfo& info() const;
  EngineStats stats() const;
  // ok until the engine fails; then why (see the top of this file).
  EngineHealth health() const;
  // The model directory's tokenizer, or nullptr when it has no tokenizer.json.
  const Tokenizer* tokenizer() const;
  // The model directory's chat template (with its tokenizer), or nullptr when it has none
  // (or one that cannot be parsed: EngineInfo::chat_template_error says why).
  const ChatTemplate* chat_template() const;

 private:
  struct CACHET_HIDDEN Impl;
  friend struct engine::EngineTestAccess;
  explicit Engine(std::unique_ptr<Impl> impl);
  // impl_, or Error(kUnavailable) naming `method` when this Engine was moved from.
  Impl& checked_impl(const char* method) const;
  std::unique_ptr<Impl> impl_;
};

}  // namespace cachet
