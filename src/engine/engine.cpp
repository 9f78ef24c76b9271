// Engine: the thread that runs an EngineCore's steps, the requests' way in (submit, abort,
// generate) and their updates' way out (the callbacks), and the engine's failed state.
#include "cachet/engine.h"

#include <fmt/format.h>

#include <condition_variable>
#include <future>
#include <mutex>
#include <thread>
#include <unordered_map>

#include "engine/engine_core.h"
#include "engine/engine_setup.h"
#include "engine/engine_testing.h"
#include "util/log.h"

namespace cachet {

struct Engine::Impl {
  util::Logger log;
  EngineInfo info;
  std::optional<Tokenizer> tokenizer;
  std::optional<ChatTemplate> chat_template;
  std::unique_ptr<engine::EngineCore> core;  // touched by the loop thread only

  // Shared with callers, under `mutex`.
  mutable std::mutex mutex;
  std::condition_variable wake;
  struct Submission {
    RequestId id;
    Request request;
    std::shared_ptr<RequestCallback> callback;
    engine::Clock::time_point submitted;
    std::string problem;  // why it cannot run, found in submit() (tokenizing)
  };
  std::vector<Submission> inbox;
  std::vector<RequestId> aborts;
  // A request submitted and not yet given all of its final updates: whatever happens, each
  // of its samples gets exactly one.
  struct LiveRequest {
    std::shared_ptr<RequestCallback> callback;
    std::vector<bool> finished;  // per sample
    std::int32_t remaining = 0;  // samples without their final update
  };
  std::unordered_map<RequestId, LiveRequest> live;
  RequestId next_id = 1;
  EngineStats stats;
  std::string failure;      // why the engine failed; empty while it is healthy
  bool stop = false;        // shutting down
  bool self_owned = false;  // destroyed from a callback: the loop thread frees this Impl
  std::thread loop_thread;
  std::thread::id loop_id;

  Impl(const EngineConfig& config, const engine::BackendWrapper& wrap);
  ~Impl();
  void build(const EngineConfig& config, const engine::BackendWrapper& wrap);
  static void shut_down(std::unique_ptr<Impl> impl);
  bool on_loop_thread() const { return std::this_thread::get_id() == loop_id; }
  void loop();
  void run();
  void fail(const std::string& reason);
  void deliver(std::vector<engine::Delivery> deliveries);
  // Under `mutex`: sample `sample_index` of request `id` has had its final update.
  void mark_finished(RequestId id, std::int32_t sample_index);
};

void Engine::Impl::mark_finished(RequestId id, std::int32_t sample_index) {
  auto it = live.find(id);
  if (it == live.end()) return;
  LiveRequest& r = it->second;
  const auto j = static_cast<std::size_t>(sample_index);
  if (j >= r.finished.size() || r.finished[j]) return;
  r.finished[j] = true;
  if (--r.remaining == 0) live.erase(it);
}

// The engine's thread builds the engine, runs it and tears it down, so that a GPU backend
// makes its device current on that thread only: the caller's threads keep theirs.
Engine::Impl::Impl(const EngineConfig& config, const engine::BackendWrapper& wrap)
    : log(config.log_level, config.log_sink) {
  std::promise<void> built;
  std::future<void> ready = built.get_future();
  // The thread owns the promise: this frame may be gone as soon as set_value() is called.
  loop_thread = std::thread([this, &config, &wrap, built = std::move(built)]() mutable {
    try {
      build(config, wrap);
    } catch (...) {
      built.set_exception(std::current_exception());
      return;
    }
    built.set_value();
    loop();  // from here on, nothing of the constructor's frame is used
  });
  loop_id = loop_thread.get_id();
  try {
    ready.get();
  } catch (...) {
    loop_thread.join();
    throw;
  }
}

void Engine::Impl::build(const EngineConfig& config, const engine::BackendWrapper& wrap) {
  engine::EngineParts parts = engine::build_engine_parts(config, log);
  if (wrap) parts.backend = wrap(std::move(parts.backend));
  info = parts.info;
  tokenizer = parts.tokenizer;
  chat_template = parts.chat_template;
  core = std::make_unique<engine::EngineCore>(config, info, std::move(parts.model),
                                              std::move(parts.backend), std::move(parts.tokenizer),
                                              log, std::move(parts.disk));
  stats = core->stats();
}

Engine::Impl::~Impl() {
  {
    std::lock_guard lock(mutex);
    stop = true;
  }
  wake.notify_all();
  if (loop_thread.joinable()) loop_thread.join();
}

// Destroying an Engine from one of its callbacks runs on the engine's own thread, where
// joining it would wait for itself: the thread then finishes the shutdown (live requests end
// kAborted) once the callback returns, and frees the engine itself.
void Engine::Impl::shut_down(std::unique_ptr<Impl> impl) {
  if (!impl || !impl->on_loop_thread()) return;  // ~Impl stops and joins the thread
  {
    std::lock_guard lock(impl->mutex);
    impl->stop = true;
    impl->self_owned = true;
  }
  impl.release();  // NOLINT(bugprone-unused-return-value): loop() deletes it
}

void Engine::Impl::deliver(std::vector<engine::Delivery> deliveries) {
  {
    // A request is over for abort() as soon as the core has finished it, before any of this
    // batch's callbacks run (one of them may be waiting to abort it).
    std::lock_guard lock(mutex);
    for (const auto& d : deliveries)
      if (d.update.finished) mark_finished(d.update.id, d.update.sample_index);
  }
  for (auto& d : deliveries) {
    if (!d.callback || !*d.callback) continue;
    try {
      (*d.callback)(d.update);
    } catch (const std::exception& e) {
      log.error("request {}: callback threw: {}", d.update.id, e.what());
    } catch (...) {
      log.error("request {}: callback threw", d.update.id);
    }
  }
}

void Engine::Impl::loop() {
  try {
    run();
  } catch (const std::exception& e) {
    fail(e.what());
  } catch (...) {
    fail("an exception of unknown type on the engine's thread");
  }
  core.reset();  // the backend's memory goes now, on the thread that made its device current
  bool free_self = false;
  {
    std::lock_guard lock(mutex);
    free_self = self_owned;
  }
  if (free_self) {
    loop_thread.detach();
    delete this;
  }
}

// The engine's thread until shutdown. Anything it throws fails the engine (loop()).
void Engine::Impl::run() {
  for (;;) {
    std::vector<Submission> new_requests;
    std::vector<RequestId> to_abort;
    bool stopping;
    {
      std::unique_lock lock(mutex);
      wake.wait(lock,
                [&] { return stop || !inbox.empty() || !aborts.empty() || core->has_work(); });
      new_requests.swap(inbox);
      to_abort.swap(aborts);
      stopping = stop;
    }
    for (auto& s : new_requests)
      core->add(s.id, std::move(s.request), s.callback, s.submitted, std::move(s.problem));
    for (RequestId id : to_abort) core->abort(id);
    if (stopping) {
      // Whatever is still live ends as aborted: every callback fires exactly once.
      std::vector<RequestId> remaining;
      {
        std::lock_guard lock(mutex);
        for (const auto& [id, request] : live) remaining.push_back(id);
      }
      for (RequestId id : remaining) core->abort(id);
      deliver(core->take_deliveries());
      return;
    }
    if (core->has_work()) core->step();
    EngineStats snapshot = core->stats();
    {
      std::lock_guard lock(mutex);
      stats = snapshot;
    }
    deliver(core->take_deliveries());
  }
}

// The failed state: every live request gets its final update with FinishReason::kError and
// the reason, and from now on submit() and generate() throw ErrorCode::kEngineFailed.
void Engine::Impl::fail(const std::string& reason) {
  const std::string why = "engine failed: " + reason;
  log.error("{}", why);
  std::vector<engine::Delivery> out;
  try {
    core->abandon(why);
    out = core->take_deliveries();  // updates made before the failure, then the final ones
  } catch (...) {
    // The core cannot even say goodbye: the live map below still reaches every request.
  }
  {
    std::lock_guard lock(mutex);
    failure = why;
    inbox.clear();  // submitted but never added: their ids are in `live`, handled below
    aborts.clear();
    for (const auto& d : out)
      if (d.update.finished) mark_finished(d.update.id, d.update.sample_index);
    for (const auto& [id, r] : live)
      for (std::size_t j = 0; j < r.finished.size(); ++j)
        if (!r.finished[j])
          out.push_back(engine::bare_error(id, static_cast<std::int32_t>(j), r.callback, why));
  }
  deliver(std::move(out));
}

Engine::Engine(const EngineConfig& config)
    : impl_(std::make_unique<Impl>(config, engine::BackendWrapper{})) {}
Engine::Engine(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}
Engine::~Engine() { Impl::shut_down(std::move(impl_)); }
Engine::Engine(Engine&&) noexcept = default;
Engine& Engine::operator=(Engine&& other) noexcept {
  if (this != &other) {
    Impl::shut_down(std::move(impl_));
    impl_ = std::move(other.impl_);
  }
  return *this;
}

// A moved-from Engine has no Impl: using it is an error, not a null dereference.
Engine::Impl& Engine::checked_impl(const char* method) const {
  if (!impl_)
    throw Error(ErrorCode::kUnavailable,
                fmt::format("Engine::{}: this Engine was moved from and has no model", method));
  return *impl_;
}

namespace {

void throw_if_failed(const std::string& failure, const char* method) {
  if (!failure.empty())
    throw Error(ErrorCode::kEngineFailed, fmt::format("Engine::{}: {}", method, failure));
}

}  // namespace

RequestId Engine::submit(Request request, RequestCallback callback) {
  Impl& impl = checked_impl("submit");
  {
    std::lock_guard lock(impl.mutex);
    throw_if_failed(impl.failure, "submit");
  }
  const auto now = engine::Clock::now();
  // Text is tokenized here, on the caller's thread: a long prompt then holds up its own
  // caller, not the engine's thread and every request it is running. A problem is reported
  // through the callback like every other bad request.
  std::string problem =
      engine::tokenize_prompt(request, impl.tokenizer ? &*impl.tokenizer : nullptr,
                              impl.chat_template ? &*impl.chat_template : nullptr);
  auto shared = std::make_shared<RequestCallback>(std::move(callback));
  RequestId id;
  {
    std::lock_guard lock(impl.mutex);
    throw_if_failed(impl.failure, "submit");
    if (impl.stop)
      throw Error(ErrorCode::kUnavailable, "Engine::submit: the engine is shutting down");
    id = impl.next_id++;
    const std::int32_t n = engine::num_samples(request.params);
    impl.live.emplace(id,
                      Impl::LiveRequest{shared, std::vector<bool>(static_cast<std::size_t>(n)), n});
    impl.inbox.push_back({id, std::move(request), std::move(shared), now, std::move(problem)});
  }
  impl.wake.notify_all();
  return id;
}

bool Engine::abort(RequestId id) {
  Impl& impl = checked_impl("abort");
  {
    std::lock_guard lock(impl.mutex);
    if (!impl.live.contains(id) || !impl.failure.empty()) return false;
    impl.aborts.push_back(id);
  }
  impl.wake.notify_all();
  return true;
}

std::vector<RequestOutput> Engine::generate(const std::vector<Request>& requests) {
  Impl& impl = checked_impl("generate");
  if (impl.on_loop_thread())
    throw Error(ErrorCode::kInvalidArgument,
                "Engine::generate called from a request callback, on the engine's own thread: it "
                "would wait for the thread that has to run it. Call submit() there, or "
                "generate() from another thread");
  struct Collector {
    std::mutex mutex;
    std::condition_variable done;
    std::vector<RequestOutput> outputs;
    std::size_t remaining = 0;
  };
  // Request i's samples go to outputs[first[i] + sample_index].
  std::vector<std::size_t> first(requests.size());
  std::size_t total = 0;
  for (std::size_t i = 0; i < requests.size(); ++i) {
    first[i] = total;
    total += static_cast<std::size_t>(engine::num_samples(requests[i].params));
  }
  auto collector = std::make_shared<Collector>();
  collector->outputs.resize(total);
  collector->remaining = total;
  for (std::size_t i = 0; i < requests.size(); ++i) {
    submit(requests[i], [collector, at = first[i]](const RequestUpdate& u) {
      if (!u.finished) return;
      std::lock_guard lock(collector->mutex);
      collector->outputs[at + static_cast<std::size_t>(u.sample_index)] = *u.output;
      if (--collector->remaining == 0) collector->done.notify_all();
    });
  }
  std::unique_lock lock(collector->mutex);
  collector->done.wait(lock, [&] { return collector->remaining == 0; });
  return std::move(collector->outputs);
}

std::vector<RequestOutput> Engine::generate(const std::vector<std::vector<TokenId>>& prompts,
                                            const SamplingParams& params) {
  std::vector<Request> requests;
  requests.reserve(prompts.size());
  for (const auto& p : prompts) requests.push_back({p, params, {}, {}});
  return generate(requests);
}

const EngineInfo& Engine::info() const { return checked_impl("info").info; }

const Tokenizer* Engine::tokenizer() const {
  const Impl& impl = checked_impl("tokenizer");
  return impl.tokenizer ? &*impl.tokenizer : nullptr;
}

const ChatTemplate* Engine::chat_template() const {
  const Impl& impl = checked_impl("chat_template");
  return impl.chat_template ? &*impl.chat_template : nullptr;
}

EngineStats Engine::stats() const {
  const Impl& impl = checked_impl("stats");
  std::lock_guard lock(impl.mutex);
  return impl.stats;
}

EngineHealth Engine::health() const {
  const Impl& impl = checked_impl("health");
  std::lock_guard lock(impl.mutex);
  return {impl.failure.empty(), impl.failure};
}

namespace engine {

Engine EngineTestAccess::make(const EngineConfig& config, const BackendWrapper& wrap) {
  return Engine(std::make_unique<Engine::Impl>(config, wrap));
}

EngineCore& EngineTestAccess::core(Engine& engine) { return *engine.checked_impl("core").core; }

}  // namespace engine
}  // namespace cachet
