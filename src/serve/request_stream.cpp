#include "serve/request_stream.h"

#include <utility>

namespace cachet::serve {

namespace {

// Feeds one update to the metrics: the gap since the sample's previous tokens (its first
// token's wait is the time to first token, not a gap), and its output when it ends.
void observe(ServerMetrics& metrics,
             std::vector<std::optional<std::chrono::steady_clock::time_point>>& last_token_at,
             const RequestUpdate& u) {
  const auto i = static_cast<std::size_t>(u.sample_index);  // < num_samples: sized for them
  if (!u.new_token_ids.empty()) {
    const auto now = std::chrono::steady_clock::now();
    if (last_token_at[i])
      metrics.observe_token_gap(std::chrono::duration<double>(now - *last_token_at[i]).count(),
                                u.new_token_ids.size());
    last_token_at[i] = now;
  }
  if (u.finished && u.output) metrics.observe_finished(*u.output, u.sample_index == 0);
}

}  // namespace

RequestStream::RequestStream(Engine& engine, Request request,
                             std::shared_ptr<ServerMetrics> metrics)
    : engine_(engine), shared_(std::make_shared<Shared>()) {
  num_samples_ = std::max(1, request.params.n);
  shared_->last_token_at.resize(static_cast<std::size_t>(num_samples_));
  std::shared_ptr<Shared> shared = shared_;
  id_ = engine_.submit(std::move(request), [shared, metrics](const RequestUpdate& u) {
    if (metrics) observe(*metrics, shared->last_token_at, u);
    SampleUpdate s;
    s.sample = u.sample_index;
    s.token_ids = u.new_token_ids;
    s.logprobs = u.new_logprobs;
    s.text = u.new_text;
    s.num_cached_tokens = u.num_cached_tokens;
    if (u.finished && u.output) s.output = *u.output;
    {
      std::lock_guard lock(shared->mutex);
      if (u.finished) ++shared->finished;
      shared->queue.push_back(std::move(s));
    }
    shared->ready.notify_all();
  });
}

RequestStream::~RequestStream() {
  if (!done()) abort();
}

void RequestStream::abort() { engine_.abort(id_); }

std::vector<SampleUpdate> RequestStream::take(std::chrono::milliseconds timeout) {
  std::unique_lock lock(shared_->mutex);
  shared_->ready.wait_for(lock, timeout, [&] { return !shared_->queue.empty(); });
  std::vector<SampleUpdate> out(std::make_move_iterator(shared_->queue.begin()),
                                std::make_move_iterator(shared_->queue.end()));
  shared_->queue.clear();
  for (const SampleUpdate& u : out) taken_finals_ += u.output ? 1 : 0;
  return out;
}

bool RequestStream::done() const { return taken_finals_ >= num_samples_; }

}  // namespace cachet::serve
