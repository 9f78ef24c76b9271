// Hostile input through the Engine: construction with broken or absurd model directories and
// options fails with a cachet::Error naming the problem; a bad request fails alone (its own
// FinishReason::kError and message) while the engine's thread and the other requests go on.
// The rows of "Bad input" in docs/reliability.md point here.
#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <atomic>
#include <chrono>
#include <cmath>
#include <condition_variable>
#include <fstream>
#include <functional>
#include <limits>
#include <map>
#include <mutex>
#include <nlohmann/json.hpp>
#include <random>
#include <thread>

#include "cachet/engine.h"
#include "model/make_model.h"
#include "support/test_support.h"
#include "support/tiny_model.h"
#include "tokenizer/unicode.h"

// The KV-cache test asks for terabytes on purpose: under AddressSanitizer the allocation must
// fail as it does without it (a null pointer), not abort the test.
extern "C" const char* __asan_default_options() { return "allocator_may_return_null=1"; }

namespace cachet {
namespace {

namespace fs = std::filesystem;
using ::testing::HasSubstr;
using Json = nlohmann::json;
using testing::TinyModel;

constexpr auto kWaitLimit = std::chrono::seconds(60);

using testing::greedy;

// Building an engine with `c` fails with `code`; returns the message.
std::string construction_error(const EngineConfig& c, ErrorCode code) {
  try {
    Engine engine(c);
  } catch (const Error& e) {
    EXPECT_EQ(e.code(), code) << e.what();
    return e.what();
  }
  ADD_FAILURE() << "the engine was built";
  return "";
}

// config.json of `m` with `changes` applied.
void edit_config(const TinyModel& m, const Json& changes) {
  const fs::path path = m.dir.path() / "config.json";
  Json j = Json::parse(testing::read_file(path));
  j.update(changes);
  testing::write_file(path, j.dump(2));
}

TEST(EngineBadInput, ModelDirectoryThatIsAFileOrLacksConfigJson) {
  TinyModel m;
  EngineConfig c = m.engine_config();
  c.model_dir = (m.dir.path() / "config.json").string();
  std::string message = construction_error(c, ErrorCode::kNotFound);
  EXPECT_THAT(message, HasSubstr(c.model_dir));
  EXPECT_THAT(message, HasSubstr("not a directory"));
  c.model_dir = "";
  EXPECT_THAT(construction_error(c, ErrorCode::kInvalidArgument), HasSubstr("model_dir is empty"));
  fs::remove(m.dir.path() / "config.json");
  c = m.engine_config();
  message = construction_error(c, ErrorCode::kNotFound);
  EXPECT_THAT(message, HasSubstr((m.dir.path() / "config.json").string()));
}

TEST(EngineBadInput, AbsurdEngineOptionsNameTheField) {
  TinyModel m;
  struct Case {
    std::function<void(EngineConfig&)> change;
    std::string field;
  };
  const double nan = std::numeric_limits<double>::quiet_NaN();
  const std::vector<Case> cases = {
      {[](EngineConfig& c) { c.block_size = 0; }, "block_size"},
      {[](EngineConfig& c) { c.block_size = 3; }, "block_size"},
      {[](EngineConfig& c) { c.block_size = 512; }, "block_size"},
      {[](EngineConfig& c) { c.num_kv_blocks = -1; }, "num_kv_blocks"},
      {[](EngineConfig& c) { c.kv_cache_bytes = -1; }, "kv_cache_bytes"},
      {[](EngineConfig& c) { c.max_num_seqs = 0; }, "max_num_seqs"},
      {[](EngineConfig& c) { c.max_num_batched_tokens = 0; }, "max_num_batched_tokens"},
      {[](EngineConfig& c) { c.max_model_len = -1; }, "max_model_len"},
      {[](EngineConfig& c) { c.num_threads = -1; }, "num_threads"},
      // Used to start 100,000 threads, and to terminate the process where that failed.
      {[](EngineConfig& c) { c.num_threads = 100000; }, "num_threads"},
      {[nan](EngineConfig& c) { c.gpu_memory_utilization = nan; }, "gpu_memory_utilization"},
      {[](EngineConfig& c) { c.gpu_memory_utilization = 1.5; }, "gpu_memory_utilization"},
  };
  for (const Case& k : cases) {
    EngineConfig c = m.engine_config();
    k.change(c);
    const std::string message = construction_error(c, ErrorCode::kInvalidArgument);
    EXPECT_THAT(message, HasSubstr("EngineConfig: " + k.field));
  }
}

// A cache of a trillion blocks (capped to what block ids can count) cannot be allocated; the
// error says so rather than the process being killed.
TEST(EngineBadInput, KvCacheTooLargeToAllocateIsOutOfMemory) {
  // Each layer's K (or V) pool asks for about 275 GB: where the kernel grants any request
  // (overcommit mode 1) or has that much memory, the allocation would succeed.
  if (testing::read_file("/proc/sys/vm/overcommit_memory").starts_with("1"))
    GTEST_SKIP() << "vm.overcommit_memory = 1: any allocation succeeds";
  std::ifstream meminfo("/proc/meminfo");
  std::int64_t total_kib = 0;
  for (std::string key; meminfo >> key;) {
    std::int64_t kib = 0;
    if ((key == "MemTotal:" || key == "SwapTotal:") && meminfo >> kib) total_kib += kib;
  }
  if (total_kib > (std::int64_t{200} << 20)) GTEST_SKIP() << "more than 200 GiB of memory";
  TinyModel m;
  for (int which = 0; which < 2; ++which) {
    EngineConfig c = m.engine_config();
    c.debug_poison_kv = false;
    if (which == 0) {
      c.num_kv_blocks = std::int64_t{1} << 40;
    } else {
      c.kv_cache_bytes = std::numeric_limits<std::int64_t>::max();
    }
    const std::string message = construction_error(c, ErrorCode::kOutOfMemory);
    EXPECT_THAT(message, HasSubstr("cannot allocate the KV cache"));
  }
}

// A config.json claiming a billion layers or heads used to fail as an absurd KV block size
// ("kv_cache_bytes ... holds no KV block"), computed before the weights were checked (and
// with an int64 overflow for large enough values). The weights are checked first now.
TEST(EngineBadInput, ConfigJsonAbsurdSizesFailAgainstTheWeights) {
  struct Case {
    Json changes;
    std::vector<std::string> mentions;
  };
  const std::vector<Case> cases = {
      {{{"num_hidden_layers", 2000000000}}, {"'num_hidden_layers' is 2000000000"}},
      {{{"num_attention_heads", 2000000000}, {"num_key_value_heads", 2000000000}},
       {"q_proj.weight", "num_attention_heads * head_dim"}},
      {{{"head_dim", 2147483646}}, {"q_proj.weight", "2147483646"}},
      {{{"hidden_size", 2147483646}}, {"model.embed_tokens.weight", "hidden_size"}},
      {{{"vocab_size", 1099511627776}}, {"'vocab_size'", "1099511627776"}},
      {{{"intermediate_size", 0}}, {"'intermediate_size'"}},
  };
  for (const Case& k : cases) {
    SCOPED_TRACE(k.changes.dump());
    TinyModel m;
    edit_config(m, k.changes);
    const std::string message = construction_error(m.engine_config(), ErrorCode::kInvalidModel);
    EXPECT_THAT(message, HasSubstr(m.dir.path().string()));
    for (const auto& mention : k.mentions) EXPECT_THAT(message, HasSubstr(mention));
  }
}

// generation_config.json used to be read leniently: not JSON was a warning, an id beyond 32
// bits was truncated to another token, a string or an id the model cannot produce was
// ignored. Each is an error now, as it already was when tokenizer.json is present.
TEST(EngineBadInput, GenerationConfigEosMustBeATokenOfTheModel) {
  TinyModel m;
  const fs::path gen = m.dir.path() / "generation_config.json";
  const std::vector<std::pair<std::string, std::string>> cases = {
      {"{\"eos_token_id\": 512}", "holds 512"},
      {"{\"eos_token_id\": -1}", "holds -1"},
      {"{\"eos_token_id\": [2, 4294967298]}", "holds 4294967298"},
      {"{\"eos_token_id\": \"2\"}", "holds string"},
      {"{\"eos_token_id\": ", "not a JSON object"},
      {"[2]", "not a JSON object"},
      {"{\"eos_token_id\": " + std::string(200, '[') + std::string(200, ']') + "}",
       "nested deeper than 128 levels"},
  };
  for (const auto& [text, mention] : cases) {
    SCOPED_TRACE(text);
    testing::write_file(gen, text);
    const std::string message = construction_error(m.engine_config(), ErrorCode::kInvalidModel);
    EXPECT_THAT(message, HasSubstr(gen.string()));
    EXPECT_THAT(message, HasSubstr(mention));
  }
  fs::remove(gen);
  fs::create_directory(gen);
  EXPECT_THAT(construction_error(m.engine_config(), ErrorCode::kInvalidModel),
              HasSubstr("not a regular file"));
  fs::remove(gen);
  testing::write_file(gen, "{\"eos_token_id\": [2, 511]}");
  Engine engine(m.engine_config());
  EXPECT_EQ(engine.info().eos_token_ids, (std::vector<TokenId>{2, 511}));
}

// A tokenizer.json whose pre-tokenizer pattern backtracks catastrophically: PCRE2 gives up on
// the prompt. That exception used to escape the engine's thread and terminate the process.
TEST(EngineBadInput, PromptTheTokenizerGivesUpOnFailsThatRequestAlone) {
  TinyModel m;
  testing::write_file(
      m.dir.path() / "tokenizer.json",
      Json{{"model",
            {{"type", "BPE"}, {"vocab", {{"a", 0}, {"b", 1}, {"ab", 2}}}, {"merges", {"a b"}}}},
           {"pre_tokenizer",
            {{"type", "Split"},
             {"pattern", {{"Regex", "(a+)+$"}}},
             {"behavior", "Isolated"},
             {"invert", false}}}}
          .dump());
  Engine engine(m.engine_config());
  const std::vector<Request> requests = {{{}, greedy(3), {}, std::string(32, 'a') + "b"},
                                         {{}, greedy(3), {}, "ab"},
                                         {{5, 6, 7}, greedy(3), {}, {}}};
  const auto outputs = engine.generate(requests);
  EXPECT_EQ(outputs[0].finish_reason, FinishReason::kError);
  EXPECT_THAT(outputs[0].error, HasSubstr("the prompt could not be tokenized"));
  EXPECT_THAT(outputs[0].error, HasSubstr("tokenizer.json: pre_tokenizer.pattern"));
  EXPECT_THAT(outputs[0].error, HasSubstr("gave up"));
  EXPECT_EQ(outputs[1].finish_reason, FinishReason::kLength) << outputs[1].error;
  EXPECT_EQ(outputs[1].prompt_token_ids, std::vector<TokenId>{2});
  EXPECT_EQ(outputs[2].finish_reason, FinishReason::kLength) << outputs[2].error;
  EXPECT_EQ(outputs[2].token_ids.size(), 3u);
}

// The same for the decoder: every token of this vocabulary makes the decoder's pattern give
// up, so every request fails at its first generated token, with a message, and the engine
// still serves the next call.
TEST(EngineBadInput, GeneratedTextTheDecoderGivesUpOnFailsTheRequest) {
  TinyModel m;
  Json vocab = Json::object();
  for (int i = 0; i < m.vocab(); ++i) vocab[std::string(32, 'a') + "b" + std::to_string(i)] = i;
  testing::write_file(
      m.dir.path() / "tokenizer.json",
      Json{{"model", {{"type", "BPE"}, {"vocab", vocab}, {"merges", Json::array()}}},
           {"decoder", {{"type", "Replace"}, {"pattern", {{"Regex", "(a+)+$"}}}, {"content", ""}}}}
          .dump());
  Engine engine(m.engine_config());
  for (int round = 0; round < 2; ++round) {
    const auto outputs = engine.generate({{1, 2, 3}, {4, 5}}, greedy(4));
    for (const RequestOutput& out : outputs) {
      EXPECT_EQ(out.finish_reason, FinishReason::kError);
      EXPECT_THAT(out.error, HasSubstr("decoding the generated text failed"));
      EXPECT_THAT(out.error, HasSubstr("tokenizer.json: decoder.pattern"));
      EXPECT_EQ(out.token_ids.size(), 1u);  // the token that could not be decoded
    }
  }
  EXPECT_EQ(engine.stats().blocks_in_use, 0);
}

// Text that is not valid UTF-8 is not rejected: as documented in tokenizer.h, each maximal
// invalid sequence becomes U+FFFD (Rust's String::from_utf8_lossy) before tokenization.
TEST(EngineBadInput, InvalidUtf8PromptsAreRepairedAsDocumented) {
  testing::TempDir dir;
  model::MakeModelOptions o;
  o.out_dir = dir.path();
  o.tokenizer = testing::test_data_dir() / "tokenizers/gpt2_style";
  model::make_model(o);
  EngineConfig c;
  c.model_dir = dir.path().string();
  c.device = Device::kCpu;
  c.kv_cache_bytes = 4 << 20;
  c.num_threads = 1;
  Engine engine(c);
  const std::vector<std::pair<std::string, std::string>> cases = {
      {"\x80"
       "abc",
       "\uFFFD"
       "abc"},                                   // a lone continuation byte
      {"x\xC0\xAF", "x\uFFFD\uFFFD"},            // an overlong encoding of '/'
      {"\xED\xA0\x80!", "\uFFFD\uFFFD\uFFFD!"},  // a UTF-16 surrogate
      {"ok\xE2\x82", "ok\uFFFD"},                // a truncated sequence
      {"\xFF\xFE", "\uFFFD\uFFFD"},              // bytes that never occur in UTF-8
  };
  std::vector<Request> requests;
  for (const auto& [text, repaired] : cases) requests.push_back({{}, greedy(2), {}, text});
  const auto outputs = engine.generate(requests);
  for (std::size_t i = 0; i < cases.size(); ++i) {
    SCOPED_TRACE(i);
    EXPECT_EQ(tokenizer::to_valid_utf8(cases[i].first), cases[i].second);
    EXPECT_EQ(outputs[i].finish_reason, FinishReason::kLength) << outputs[i].error;
    EXPECT_EQ(outputs[i].prompt_token_ids, engine.tokenizer()->encode(cases[i].second, true));
    EXPECT_TRUE(tokenizer::is_valid_utf8(outputs[i].text));
  }
}

TEST(EngineBadInput, SamplingParamsOutOfRangeFailAlone) {
  TinyModel m;
  Engine engine(m.engine_config());
  const float inf = std::numeric_limits<float>::infinity();
  const float nan = std::numeric_limits<float>::quiet_NaN();
  struct Case {
    std::function<void(SamplingParams&)> change;
    std::string mention;
  };
  const std::vector<Case> cases = {
      {[inf](SamplingParams& p) { p.temperature = inf; }, "temperature"},
      {[nan](SamplingParams& p) { p.temperature = nan; }, "temperature"},
      {[](SamplingParams& p) { p.top_p = 1.5f; }, "top_p"},
      {[](SamplingParams& p) { p.top_p = 0.0f; }, "top_p"},
      {[](SamplingParams& p) { p.min_p = -0.1f; }, "min_p"},
      {[nan](SamplingParams& p) { p.min_p = nan; }, "min_p"},
      {[](SamplingParams& p) { p.max_tokens = -5; }, "max_tokens"},
      {[](SamplingParams& p) { p.logprobs = 1000000; }, "logprobs must be in [0, 20]"},
      {[](SamplingParams& p) { p.prompt_logprobs = 1000000; }, "prompt_logprobs"},
      {[](SamplingParams& p) { p.prompt_logprobs = -1; }, "prompt_logprobs"},
      {[](SamplingParams& p) { p.stop_token_ids = {-1}; }, "stop_token_ids[0]"},
      {[](SamplingParams& p) { p.stop = {"x"}; }, "stop strings need the model's tokenizer"},
  };
  std::vector<Request> requests;
  for (const Case& k : cases) {
    Request r{{1, 2, 3}, greedy(3), {}, {}};
    k.change(r.params);
    requests.push_back(r);
  }
  // Edge values that are valid: the extreme seeds, a single token.
  for (std::uint64_t seed : {std::uint64_t{0}, std::numeric_limits<std::uint64_t>::max()}) {
    Request r{{1, 2, 3}, greedy(1), {}, {}};
    r.params.temperature = 1.0f;
    r.params.seed = seed;
    requests.push_back(r);
  }
  const auto outputs = engine.generate(requests);
  for (std::size_t i = 0; i < cases.size(); ++i) {
    SCOPED_TRACE(cases[i].mention);
    EXPECT_EQ(outputs[i].finish_reason, FinishReason::kError);
    EXPECT_THAT(outputs[i].error, HasSubstr(cases[i].mention));
    EXPECT_TRUE(outputs[i].token_ids.empty());
  }
  for (std::size_t i = cases.size(); i < outputs.size(); ++i) {
    EXPECT_EQ(outputs[i].finish_reason, FinishReason::kLength) << outputs[i].error;
    EXPECT_EQ(outputs[i].token_ids.size(), 1u);
  }
}

TEST(EngineBadInput, PromptsThatCannotRunFailAloneWithoutBeingRun) {
  TinyModel m;
  Engine engine(m.engine_config());
  const std::vector<Request> requests = {
      {std::vector<TokenId>(1000000, 1), greedy(2), {}, {}},  // a million tokens
      {{1, std::numeric_limits<TokenId>::min()}, greedy(2), {}, {}},
      {{1, std::numeric_limits<TokenId>::max()}, greedy(2), {}, {}},
      {{1, 2}, greedy(2), {}, "text too"},
      {{1, 2}, greedy(2), {}, {}},
  };
  const auto outputs = engine.generate(requests);
  EXPECT_THAT(outputs[0].error, HasSubstr("prompt has 1000000 tokens; max_model_len is"));
  EXPECT_THAT(outputs[1].error, HasSubstr("-2147483648 at position 1 is outside the vocabulary"));
  EXPECT_THAT(outputs[2].error, HasSubstr("2147483647 at position 1 is outside the vocabulary"));
  EXPECT_THAT(outputs[3].error, HasSubstr("not both"));
  for (std::size_t i = 0; i < 4; ++i) EXPECT_EQ(outputs[i].finish_reason, FinishReason::kError);
  EXPECT_EQ(outputs[4].finish_reason, FinishReason::kLength) << outputs[4].error;
  EXPECT_EQ(engine.stats().num_steps, 2);  // only the good request was run
}

// A moved-from Engine has no engine behind it: every call used to dereference null.
TEST(EngineBadInput, MovedFromEngineThrowsInsteadOfCrashing) {
  TinyModel m;
  Engine engine(m.engine_config());
  Engine other(std::move(engine));
  const auto expect_unavailable = [](const std::function<void()>& call, const std::string& name) {
    try {
      call();
      ADD_FAILURE() << name << " did not throw";
    } catch (const Error& e) {
      EXPECT_EQ(e.code(), ErrorCode::kUnavailable);
      EXPECT_THAT(e.what(), HasSubstr("Engine::" + name + ": this Engine was moved from"));
    }
  };
  expect_unavailable([&] { engine.submit({{1, 2}, greedy(2), {}, {}}, nullptr); }, "submit");
  expect_unavailable([&] { engine.generate({{1, 2}}, greedy(2)); }, "generate");
  expect_unavailable([&] { engine.abort(1); }, "abort");
  expect_unavailable([&] { engine.info(); }, "info");
  expect_unavailable([&] { engine.stats(); }, "stats");
  expect_unavailable([&] { engine.tokenizer(); }, "tokenizer");
  EXPECT_EQ(other.generate({{1, 2}}, greedy(2))[0].token_ids.size(), 2u);
}

// Aborts from several threads at once, of ids that are live, waiting, finished, not yet
// issued or never valid (0, the largest id), while the same threads keep submitting: every
// request still gets exactly one final update and no KV block leaks.
TEST(EngineBadInput, AbortStormFromManyThreads) {
  TinyModel m;
  EngineConfig c = m.engine_config();
  c.max_num_seqs = 4;  // some requests wait, so some aborts hit waiting ones
  constexpr int kThreads = 4, kPerThread = 25;
  // Declared before the engine, which may still call back while it is destroyed.
  std::mutex mutex;
  std::condition_variable cv;
  std::map<RequestId, int> finals;
  int finished = 0;
  std::atomic<RequestId> largest{0};
  Engine engine(c);
  std::vector<std::thread> threads;
  for (int t = 0; t < kThreads; ++t) {
    threads.emplace_back([&, t] {
      std::mt19937_64 rng(static_cast<std::uint64_t>(t) + 1);
      for (int i = 0; i < kPerThread; ++i) {
        std::vector<TokenId> prompt(1 + rng() % 12);
        for (TokenId& id : prompt) id = static_cast<TokenId>(rng() % m.vocab());
        const RequestId id =
            engine.submit({prompt, greedy(1 + rng() % 20), {}, {}}, [&](const RequestUpdate& u) {
              if (!u.finished) return;
              std::lock_guard lock(mutex);
              ++finals[u.id];
              ++finished;
              cv.notify_all();
            });
        RequestId seen = largest.load();
        while (seen < id && !largest.compare_exchange_weak(seen, id)) {
        }
        for (int k = 0; k < 3; ++k) {
          const RequestId target = rng() % (largest.load() + 5);  // may be unknown
          engine.abort(target);
        }
        engine.abort(0);
        engine.abort(std::numeric_limits<RequestId>::max());
      }
    });
  }
  for (auto& thread : threads) thread.join();
  std::unique_lock lock(mutex);
  ASSERT_TRUE(cv.wait_for(lock, kWaitLimit, [&] { return finished == kThreads * kPerThread; }))
      << finished << " of " << kThreads * kPerThread << " requests finished";
  for (const auto& [id, count] : finals) EXPECT_EQ(count, 1) << "request " << id;
  EXPECT_EQ(finals.size(), static_cast<std::size_t>(kThreads * kPerThread));
  lock.unlock();
  // The engine is intact: a request after the storm runs, and nothing is left in use.
  EXPECT_EQ(engine.generate({{1, 2, 3}}, greedy(3))[0].finish_reason, FinishReason::kLength);
  const EngineStats s = engine.stats();
  EXPECT_EQ(s.blocks_in_use, 0);
  EXPECT_EQ(s.num_running + s.num_waiting, 0);
}

}  // namespace
}  // namespace cachet
