// Many questions against one long system prompt: the prefix cache computes the system
// prompt once and every later request reuses its K/V.
//   shared_system_prompt MODEL_DIR [QUESTIONS_PER_ROUND [MAX_TOKENS]]
//
// Two rounds of different questions. The cold round starts from an empty cache: all its
// requests are submitted together, one computes the system prompt and the others wait one
// step and reuse it (in-batch deduplication), so at most one misses. The warm round's
// requests all find the system prompt cached. Each request prints its cached prompt tokens
// and time to first token; the last line says how many warm requests hit the cache.
//
// With a tokenizer.json in MODEL_DIR the prompts are text (ChatML when the vocabulary has
// <|im_start|>), otherwise token ids, so it also runs on `cachet make-model` models without
// one.
#include <cachet/engine.h>

#include <cstdio>
#include <cstdlib>
#include <string>
#include <vector>

namespace {

// Long enough to span many KV blocks: only full blocks are cached, so the longer the shared
// prefix, the larger the share of each prompt the cache serves.
const char* const kSystemPrompt =
    "You are the support assistant of a small hardware store. Answer in one short sentence. "
    "Opening hours are 8:00 to 18:00 on weekdays and 9:00 to 13:00 on Saturdays; the store "
    "is closed on Sundays and public holidays. Returns are accepted within 30 days with a "
    "receipt; power tools must be unused and in their original packaging. Key cutting takes "
    "about five minutes and costs 4 euros per key. Paint can be mixed to any colour code "
    "while the customer waits. Deliveries within 10 km are free for orders above 100 euros. "
    "Never promise a discount, and refer questions about warranties to the manufacturer.";

const char* const kQuestions[] = {
    "When do you open on Saturday?",
    "Can I return a drill I opened?",
    "How much does a spare key cost?",
    "Do you deliver to the next town?",
    "Can you match a paint colour?",
    "Are you open on Easter Monday?",
    "Is there a discount for bulk?",
    "Who handles a broken warranty?",
    "How long does key cutting take?",
    "Do you sell garden hoses?",
    "Can I pay by card?",
    "Where can I park?",
};
constexpr int kNumQuestions = static_cast<int>(sizeof kQuestions / sizeof kQuestions[0]);

// A prompt for question `q`: text when the model has a tokenizer, else token ids derived
// deterministically from the text (nonsense to the model, but an identical shared prefix is
// all the cache needs).
cachet::Request make_request(const cachet::Engine& engine, int q) {
  cachet::Request r;
  const std::string question = kQuestions[q % kNumQuestions];
  if (const cachet::Tokenizer* tok = engine.tokenizer()) {
    if (tok->token_to_id("<|im_start|>"))
      r.prompt = std::string("<|im_start|>system\n") + kSystemPrompt + "<|im_end|>\n" +
                 "<|im_start|>user\n" + question + "<|im_end|>\n<|im_start|>assistant\n";
    else
      r.prompt = std::string(kSystemPrompt) + "\n\nQuestion: " + question + "\nAnswer:";
    return r;
  }
  const int vocab = engine.info().vocab_size;
  auto id_of = [vocab](unsigned char c, std::size_t pos) {
    return static_cast<cachet::TokenId>((c * 31u + pos * 7u) % static_cast<unsigned>(vocab));
  };
  // One id per 4 characters keeps the id prompts about as long as tokenized text.
  const std::string system = kSystemPrompt;
  for (std::size_t i = 0; i < system.size(); i += 4)
    r.prompt_token_ids.push_back(id_of(static_cast<unsigned char>(system[i]), i));
  for (std::size_t i = 0; i < question.size(); i += 2)
    r.prompt_token_ids.push_back(id_of(static_cast<unsigned char>(question[i]), i));
  return r;
}

// Runs one round, prints one line per request, returns how many requests hit the cache.
int run_round(cachet::Engine& engine, const char* name, const char* note, int first_question,
              int count, const cachet::SamplingParams& params) {
  std::vector<cachet::Request> requests;
  for (int i = 0; i < count; ++i) {
    requests.push_back(make_request(engine, first_question + i));
    requests.back().params = params;
  }
  // generate() submits them together, so they are batched in the same engine steps.
  const auto outputs = engine.generate(requests);
  int hits = 0;
  double ttft_sum = 0.0;
  std::printf("%s round: %s\n", name, note);
  for (int i = 0; i < count; ++i) {
    const auto& out = outputs[static_cast<std::size_t>(i)];
    if (out.finish_reason == cachet::FinishReason::kError) {
      std::fprintf(stderr, "request failed: %s\n", out.error.c_str());
      std::exit(1);
    }
    if (out.num_cached_tokens > 0) ++hits;
    ttft_sum += out.ttft_ms;
    std::printf("  %-34s %4d/%4zu prompt tokens cached, first token after %7.2f ms\n",
                kQuestions[(first_question + i) % kNumQuestions], out.num_cached_tokens,
                out.prompt_token_ids.size(), out.ttft_ms);
  }
  std::printf("  mean time to first token: %.2f ms\n", ttft_sum / count);
  return hits;
}

}  // namespace

int main(int argc, char** argv) {
  if (argc < 2)
    return std::fprintf(stderr, "usage: %s MODEL_DIR [QUESTIONS_PER_ROUND [MAX_TOKENS]]\n",
                        argv[0]),
           2;
  const int count = argc > 2 ? std::atoi(argv[2]) : 6;
  const int max_tokens = argc > 3 ? std::atoi(argv[3]) : 8;
  if (count < 1 || count > kNumQuestions / 2 || max_tokens < 1)
    return std::fprintf(stderr, "QUESTIONS_PER_ROUND must be 1..%d, MAX_TOKENS >= 1\n",
                        kNumQuestions / 2),
           2;
  try {
    cachet::EngineConfig config;
    config.model_dir = argv[1];
    cachet::Engine engine(config);
    cachet::SamplingParams params;
    params.temperature = 0.0f;
    params.max_tokens = max_tokens;
    params.ignore_eos = true;  // random-weight test models would otherwise stop at random

    const int cold_hits = run_round(engine, "cold",
                                    "empty cache; the first request computes the system prompt, "
                                    "the others wait one step and reuse it",
                                    0, count, params);
    const int warm_hits =
        run_round(engine, "warm", "new questions, system prompt cached", count, count, params);

    const cachet::EngineStats s = engine.stats();
    std::printf(
        "engine: %lld of %lld prompt tokens from the cache (hit rate %.0f%%), "
        "%lld blocks cached, %lld evictions\n",
        static_cast<long long>(s.prefix_cache_hit_tokens),
        static_cast<long long>(s.prefix_cache_query_tokens), 100.0 * s.prefix_cache_hit_rate,
        static_cast<long long>(s.blocks_cached), static_cast<long long>(s.evictions));
    std::printf("cold round: %d/%d requests hit the cache\n", cold_hits, count);
    std::printf("warm round: %d/%d requests hit the cache\n", warm_hits, count);
    return warm_hits == count ? 0 : 1;
  } catch (const cachet::Error& e) {
    std::fprintf(stderr, "shared_system_prompt: %s\n", e.what());
    return 1;
  }
}
