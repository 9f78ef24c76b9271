// Several client threads share one Engine: blocking generate() calls, streamed submit()
// calls, requests cancelled with abort() before or during generation, and invalid requests,
// all batched together by the engine. Checks the callback contract: every submitted request
// gets exactly one final update and nothing after it. Exits 1 if any does not.
//   concurrent_clients MODEL_DIR [THREADS [REQUESTS_PER_THREAD]]
#include <cachet/engine.h>

#include <atomic>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <memory>
#include <optional>
#include <thread>
#include <vector>

namespace {

// What one request got: written by its callback on the engine's thread (by the client itself
// for generate()), read by the client and, at the end, by main.
struct Tracker {
  std::atomic<int> updates{0};  // every update, the final one included
  std::atomic<int> finals{0};
  std::atomic<int> updates_after_final{0};
  std::atomic<int> tokens{0};
  std::atomic<int> reason{-1};   // FinishReason of the final update
  bool abort_requested = false;  // written by the submitting client only
  bool abort_accepted = false;
};

// The five ways a client uses the engine, in turn.
enum class Kind { kGenerate, kSubmit, kAbortStreaming, kAbortAtOnce, kInvalid };
constexpr int kNumKinds = 5;

cachet::RequestCallback track(std::shared_ptr<Tracker> t) {
  return [t](const cachet::RequestUpdate& u) {
    if (t->finals.load() > 0) ++t->updates_after_final;
    t->tokens += static_cast<int>(u.new_token_ids.size());
    if (u.finished) {
      t->reason = static_cast<int>(u.output->finish_reason);
      ++t->finals;
    }
    ++t->updates;
    t->updates.notify_all();  // a client may be waiting for the first token to abort
  };
}

}  // namespace

int main(int argc, char** argv) {
  if (argc < 2)
    return std::fprintf(stderr, "usage: %s MODEL_DIR [THREADS [REQUESTS_PER_THREAD]]\n", argv[0]),
           2;
  const int num_threads = argc > 2 ? std::atoi(argv[2]) : 4;
  const int per_thread = argc > 3 ? std::atoi(argv[3]) : 10;
  if (num_threads < 1 || per_thread < 1)
    return std::fprintf(stderr, "THREADS and REQUESTS_PER_THREAD must be >= 1\n"), 2;

  std::vector<std::shared_ptr<Tracker>> trackers;  // outlive the engine: see the end of main
  try {
    cachet::EngineConfig config;
    config.model_dir = argv[1];
    auto engine = std::make_unique<cachet::Engine>(config);
    const cachet::TokenId vocab = engine->info().vocab_size;

    // Trackers are created up front so client threads only touch their own slots.
    const int total = num_threads * per_thread;
    for (int i = 0; i < total; ++i) trackers.push_back(std::make_shared<Tracker>());

    auto client = [&](int c) {
      for (int j = 0; j < per_thread; ++j) {
        const auto slot = static_cast<std::size_t>(c * per_thread + j);
        Tracker& t = *trackers[slot];
        const auto kind = static_cast<Kind>((c + j) % kNumKinds);
        cachet::Request r;
        // A shared first block across clients (so they also share cached K/V), then ids
        // specific to this request.
        for (int k = 0; k < 24; ++k) r.prompt_token_ids.push_back((k * 13 + 5) % vocab);
        for (int k = 0; k < 8; ++k) r.prompt_token_ids.push_back((c * 97 + j * 31 + k) % vocab);
        r.params.temperature = 0.8f;
        r.params.seed = static_cast<std::uint64_t>(c * 1000 + j);
        // Long enough that an abort after the first token usually lands mid-generation.
        r.params.max_tokens = 48;
        r.params.ignore_eos = true;
        if (kind == Kind::kInvalid) r.prompt_token_ids.back() = vocab;  // outside the vocabulary

        if (kind == Kind::kGenerate) {
          // Blocking: generate() is submit() plus a wait, one output per request.
          const auto outs = engine->generate({r});
          t.reason = static_cast<int>(outs[0].finish_reason);
          t.tokens = static_cast<int>(outs[0].token_ids.size());
          t.updates = 1;
          t.finals = 1;
          continue;
        }
        const cachet::RequestId id = engine->submit(r, track(trackers[slot]));
        if (kind == Kind::kAbortAtOnce) {
          t.abort_requested = true;
          t.abort_accepted = engine->abort(id);
        } else if (kind == Kind::kAbortStreaming) {
          // Wait for the first update (a token, or the final one if it was quicker).
          t.updates.wait(0);
          t.abort_requested = true;
          t.abort_accepted = engine->abort(id);
        }
      }
    };
    std::vector<std::thread> clients;
    for (int c = 0; c < num_threads; ++c) clients.emplace_back(client, c);
    for (auto& th : clients) th.join();

    // Every request should end by itself; give them a generous deadline, then destroy the
    // engine, which aborts whatever is left: a request stuck in the engine would still get
    // its final update then, so a count above or below one means a broken contract.
    const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(120);
    for (const auto& t : trackers)
      while (t->finals.load() == 0 && std::chrono::steady_clock::now() < deadline)
        std::this_thread::sleep_for(std::chrono::milliseconds(1));
    const cachet::EngineStats stats = engine->stats();
    engine.reset();
    std::printf("engine: %lld steps, prefix-cache hit rate %.0f%%, %lld preemptions\n",
                static_cast<long long>(stats.num_steps), 100.0 * stats.prefix_cache_hit_rate,
                static_cast<long long>(stats.preemptions));
  } catch (const cachet::Error& e) {
    std::fprintf(stderr, "concurrent_clients: %s\n", e.what());
    return 1;
  }

  int by_reason[4] = {0, 0, 0, 0};
  int bad = 0, aborts_requested = 0, aborts_accepted = 0;
  long long tokens = 0;
  for (std::size_t i = 0; i < trackers.size(); ++i) {
    const Tracker& t = *trackers[i];
    if (t.finals != 1 || t.updates_after_final != 0) {
      ++bad;
      std::fprintf(stderr, "request %zu: %d final updates, %d updates after the final one\n", i,
                   t.finals.load(), t.updates_after_final.load());
    }
    if (t.reason >= 0 && t.reason < 4) ++by_reason[t.reason];
    aborts_requested += t.abort_requested;
    aborts_accepted += t.abort_accepted;
    tokens += t.tokens;
  }
  using cachet::FinishReason;
  std::printf(
      "%zu requests from %d threads, %lld tokens: %d length, %d stop, %d error (invalid "
      "on purpose), %d aborted\n",
      trackers.size(), num_threads, tokens, by_reason[static_cast<int>(FinishReason::kLength)],
      by_reason[static_cast<int>(FinishReason::kStop)],
      by_reason[static_cast<int>(FinishReason::kError)],
      by_reason[static_cast<int>(FinishReason::kAborted)]);
  // abort() returns true while the request is live; one racing the request's last step is
  // accepted, yet the request may still end normally.
  std::printf("abort(): %d calls, %d accepted\n", aborts_requested, aborts_accepted);
  if (bad > 0) {
    std::printf("FAILED: %d requests did not get exactly one final update\n", bad);
    return 1;
  }
  std::printf("every request got exactly one final update\n");
  return 0;
}
