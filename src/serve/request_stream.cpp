#include "serve/request_stream.h"

#include <utility>

namespace cachet::serve {

RequestStream::RequestStream(Engine& engine, Request request)
    : engine_(engine), shared_(std::make_shared<Shared>()) {
  num_samples_ = std::max(1, request.params.n);
  std::shared_ptr<Shared> shared = shared_;
  id_ = engine_.submit(std::move(request), [shared](const RequestUpdate& u) {
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
