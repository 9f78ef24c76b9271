// End-to-end engine benchmarks on the CPU backend, each reported side by side in one run:
//  - prefill and decode tokens/s of a model preset (default qwen3-0.6b);
//  - time to first token of a request whose long prefix is cached vs the same request with
//    the prefix cache off.
//   bench_engine [--preset NAME] [--arch qwen3] [--prompt-len N] [--reps N] [--threads N]
// Reports medians over repetitions. Makes the model under $TMPDIR if needed (seed 1, bf16).
#include <fmt/core.h>

#include <algorithm>
#include <chrono>
#include <cstdlib>
#include <filesystem>
#include <map>
#include <string>

#include "bench_util.h"
#include "cachet/engine.h"
#include "model/make_model.h"

namespace {

using Clock = std::chrono::steady_clock;

using cachet::bench::median;
using cachet::bench::tokens;

}  // namespace

int main(int argc, char** argv) {
  std::map<std::string, std::string> args = {{"--preset", "qwen3-0.6b"}, {"--arch", "qwen3"},
                                             {"--prompt-len", "512"},    {"--reps", "5"},
                                             {"--threads", "0"},         {"--decode-tokens", "32"}};
  for (int i = 1; i + 1 < argc; i += 2) args[argv[i]] = argv[i + 1];
  const int prompt_len = std::stoi(args["--prompt-len"]);
  const int reps = std::stoi(args["--reps"]);
  const int decode_tokens = std::stoi(args["--decode-tokens"]);

  const std::filesystem::path dir = cachet::bench::ensure_model(args["--arch"], args["--preset"]);

  auto make_engine = [&](bool caching) {
    cachet::EngineConfig c;
    c.model_dir = dir.string();
    c.device = cachet::Device::kCpu;
    c.num_threads = std::stoi(args["--threads"]);
    c.enable_prefix_caching = caching;
    c.max_num_batched_tokens = std::max(2048, prompt_len + 64);
    c.kv_cache_bytes = std::int64_t{2} << 30;
    return cachet::Engine(c);
  };
  cachet::Engine on = make_engine(true);
  cachet::Engine off = make_engine(false);
  const int vocab = on.info().vocab_size;
  fmt::print("model {} {} ({} layers), {} threads, prompt {} tokens, {} repetitions (median)\n",
             args["--arch"], args["--preset"], on.info().num_layers, on.info().num_threads,
             prompt_len, reps);

  // Prefill and decode throughput (cache off: every prompt computed).
  cachet::SamplingParams p;
  p.temperature = 0.0f;
  p.ignore_eos = true;
  p.max_tokens = decode_tokens;
  std::vector<double> prefill_tps, decode1_tps, decode8_tps;
  for (int r = 0; r < reps; ++r) {
    auto out = off.generate({tokens(prompt_len, vocab, 100 + r)}, p)[0];
    prefill_tps.push_back(prompt_len / (out.ttft_ms / 1000.0));
    decode1_tps.push_back((out.token_ids.size() - 1) / (out.decode_ms / 1000.0));
    std::vector<std::vector<cachet::TokenId>> batch;
    for (int b = 0; b < 8; ++b) batch.push_back(tokens(16, vocab, 1000 + 10 * r + b));
    auto start = Clock::now();
    auto outs = off.generate(batch, p);
    double total_ms = std::chrono::duration<double, std::milli>(Clock::now() - start).count();
    double first_ms = 0;
    for (const auto& o : outs) first_ms = std::max(first_ms, o.ttft_ms);
    decode8_tps.push_back(8.0 * (decode_tokens - 1) / ((total_ms - first_ms) / 1000.0));
  }
  fmt::print("prefill ({} tokens):         {:8.1f} tokens/s\n", prompt_len, median(prefill_tps));
  fmt::print("decode, batch 1:             {:8.1f} tokens/s\n", median(decode1_tps));
  fmt::print("decode, batch 8:             {:8.1f} tokens/s\n", median(decode8_tps));

  // TTFT with a cached prefix: a shared prompt_len-token prefix plus a 16-token question.
  p.max_tokens = 1;
  auto prefix = tokens(prompt_len, vocab, 7);
  on.generate({prefix}, p);  // warm the cache with the prefix
  std::vector<double> ttft_on, ttft_off;
  std::int32_t cached = 0;
  for (int r = 0; r < reps; ++r) {
    auto prompt = prefix;
    auto question = tokens(16, vocab, 500 + r);
    prompt.insert(prompt.end(), question.begin(), question.end());
    auto a = on.generate({prompt}, p)[0];
    auto b = off.generate({prompt}, p)[0];
    cached = a.num_cached_tokens;
    ttft_on.push_back(a.ttft_ms);
    ttft_off.push_back(b.ttft_ms);
  }
  const double on_ms = median(ttft_on), off_ms = median(ttft_off);
  fmt::print("TTFT, {}-token prefix cached ({} tokens hit): {:8.1f} ms\n", prompt_len, cached,
             on_ms);
  fmt::print("TTFT, same request, prefix cache off:          {:8.1f} ms\n", off_ms);
  fmt::print("TTFT ratio off/on: {:.1f}x\n", off_ms / on_ms);
  return 0;
}
