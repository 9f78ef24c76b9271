// Text in, text out: the engine with the model's tokenizer (Qwen3's), text prompts, stop
// strings across token boundaries, and streamed text pieces.
#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <mutex>
#include <optional>
#include <random>
#include <string>
#include <thread>

#include "cachet/engine.h"
#include "model/make_model.h"
#include "support/test_support.h"
#include "support/tiny_model.h"

namespace cachet {
namespace {

using testing::greedy;
using ::testing::HasSubstr;

bool valid_utf8(const std::string& s) {
  for (std::size_t i = 0; i < s.size();) {
    const auto c = static_cast<unsigned char>(s[i]);
    const std::size_t n = c < 0x80           ? 1
                          : (c >> 5) == 0x6  ? 2
                          : (c >> 4) == 0xE  ? 3
                          : (c >> 3) == 0x1E ? 4
                                             : 0;
    if (n == 0 || i + n > s.size()) return false;
    for (std::size_t k = 1; k < n; ++k)
      if ((static_cast<unsigned char>(s[i + k]) & 0xC0) != 0x80) return false;
    i += n;
  }
  return true;
}

class EngineTextTest : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    dir_ = new testing::TempDir();
    model::MakeModelOptions o;
    o.arch = model::Arch::kQwen3;
    o.preset = "tiny";
    o.seed = 21;
    o.out_dir = dir_->path();
    o.tokenizer = testing::test_data_dir() / "tokenizers/qwen3";
    model::make_model(o);
    EngineConfig c;
    c.model_dir = dir_->path().string();
    c.device = Device::kCpu;
    c.kv_cache_bytes = 16 << 20;
    engine_ = new Engine(c);
  }
  static void TearDownTestSuite() {
    delete engine_;
    delete dir_;
  }

  // Runs one request through submit(), collecting the streamed pieces.
  static std::pair<RequestOutput, std::vector<std::string>> stream(Request r) {
    std::mutex m;
    std::condition_variable cv;
    std::vector<std::string> pieces;
    std::optional<RequestOutput> out;
    engine_->submit(std::move(r), [&](const RequestUpdate& u) {
      std::lock_guard lock(m);
      pieces.push_back(u.new_text);
      if (u.finished) {
        out = *u.output;
        cv.notify_all();
      }
    });
    std::unique_lock lock(m);
    EXPECT_TRUE(cv.wait_for(lock, std::chrono::seconds(60), [&] { return out.has_value(); }));
    return {out.value_or(RequestOutput{}), pieces};
  }

  static testing::TempDir* dir_;
  static Engine* engine_;
};

testing::TempDir* EngineTextTest::dir_ = nullptr;
Engine* EngineTextTest::engine_ = nullptr;

TEST_F(EngineTextTest, TextPromptIsTheTokenizersIdsAndOutputTextIsTheDecodedIds) {
  const Tokenizer* tok = engine_->tokenizer();
  ASSERT_NE(tok, nullptr);
  const std::string text = "<|im_start|>user\nWhat is a prefix cache? Answer briefly.<|im_end|>\n";
  auto ids = tok->encode(text, true);
  auto by_text = engine_->generate({Request{{}, greedy(24), {}, text}})[0];
  auto by_ids = engine_->generate({Request{ids, greedy(24), {}, {}}})[0];
  ASSERT_EQ(by_text.finish_reason, FinishReason::kLength) << by_text.error;
  EXPECT_EQ(by_text.prompt_token_ids, ids);
  EXPECT_EQ(by_text.token_ids, by_ids.token_ids);
  EXPECT_EQ(by_text.text, tok->decode(by_text.token_ids, /*skip_special_tokens=*/true));
  EXPECT_TRUE(valid_utf8(by_text.text));
}

TEST_F(EngineTextTest, StreamedPiecesAreWholeCharactersAndConcatenateToTheText) {
  for (std::uint64_t seed = 1; seed <= 6; ++seed) {
    SamplingParams p = greedy(40);
    p.temperature = 1.0f;
    p.seed = seed;
    auto [out, pieces] = stream(Request{{}, p, {}, "Streaming test " + std::to_string(seed)});
    ASSERT_EQ(out.finish_reason, FinishReason::kLength) << out.error;
    std::string joined;
    for (const auto& piece : pieces) {
      EXPECT_TRUE(valid_utf8(piece)) << "seed " << seed;
      joined += piece;
    }
    EXPECT_EQ(joined, out.text);
    EXPECT_EQ(out.text, engine_->tokenizer()->decode(out.token_ids, true));
  }
}

TEST_F(EngineTextTest, StopStringsEndTheRequestAcrossTokenBoundariesAndAreCutFromTheText) {
  const Tokenizer* tok = engine_->tokenizer();
  Request r{{}, greedy(48), {}, "Tell me about caches."};
  r.params.temperature =
      1.0f;  // greedy random weights loop on one token; a seed keeps it reproducible
  r.params.seed = 3;
  auto free_run = engine_->generate({r})[0];
  ASSERT_EQ(free_run.finish_reason, FinishReason::kLength);
  // A stop string that spans the boundary between two generated tokens and appears in the
  // text for the first time there.
  std::size_t cut_tokens = 0, start = 0;
  std::string stop;
  for (std::size_t t = 2; t + 1 < free_run.token_ids.size() && stop.empty(); ++t) {
    const std::string before = tok->decode(std::span(free_run.token_ids).first(t), true);
    const std::string through = tok->decode(std::span(free_run.token_ids).first(t + 1), true);
    if (through.size() <= before.size() || before.empty()) continue;
    std::size_t s0 = before.size() - 1;
    while (s0 > 0 && (static_cast<unsigned char>(through[s0]) & 0xC0) == 0x80) --s0;
    const std::string candidate = through.substr(s0);
    if (free_run.text.find(candidate) == s0) {
      stop = candidate;
      start = s0;
      cut_tokens = t + 1;
    }
  }
  ASSERT_FALSE(stop.empty()) << "no usable stop string in: " << free_run.text;

  r.params.stop = {"never appears in random text \x01", stop};
  auto [out, pieces] = stream(r);
  EXPECT_EQ(out.finish_reason, FinishReason::kStop);
  EXPECT_EQ(out.text, free_run.text.substr(0, start));
  // The token that completed the stop string is kept.
  EXPECT_EQ(out.token_ids, std::vector<TokenId>(free_run.token_ids.begin(),
                                                free_run.token_ids.begin() +
                                                    static_cast<std::ptrdiff_t>(cut_tokens)));
  std::string joined;
  for (const auto& piece : pieces) joined += piece;
  EXPECT_EQ(joined, out.text);  // nothing of the stop string was ever streamed
}

TEST_F(EngineTextTest, TextRequestErrorsFailAlone) {
  SamplingParams bad_stop = greedy(4);
  bad_stop.stop = {""};
  auto outputs =
      engine_->generate({Request{{}, greedy(4), {}, "ok"}, Request{{}, bad_stop, {}, "x"},
                         Request{{1, 2}, greedy(4), {}, "both"}, Request{{}, greedy(4), {}, ""}});
  EXPECT_EQ(outputs[0].finish_reason, FinishReason::kLength);
  EXPECT_THAT(outputs[1].error, HasSubstr("stop[0]"));
  EXPECT_THAT(outputs[2].error, HasSubstr("not both"));
  EXPECT_THAT(outputs[3].error, HasSubstr("empty"));
}

// A long text is tokenized on the thread that submits it (a few MB take about a second), not on
// the engine's thread: a short request submitted meanwhile from another thread finishes
// while the long one is still being tokenized. Were the engine's thread tokenizing, the short
// request would wait for it. The long prompt is then refused as too long, alone.
TEST_F(EngineTextTest, LongTextPromptHoldsUpOnlyItsOwnCaller) {
  std::mt19937 rng(3);
  std::string text;
  while (text.size() < (std::size_t{4} << 20)) {  // random words: no pre-token cache hits
    const int len = std::uniform_int_distribution<int>(2, 9)(rng);
    for (int i = 0; i < len; ++i)
      text += static_cast<char>('a' + std::uniform_int_distribution<int>(0, 25)(rng));
    text += ' ';
  }
  std::atomic<bool> started = false, submitted = false;
  std::mutex m;
  std::condition_variable cv;
  std::optional<RequestOutput> long_out;
  std::thread long_caller([&] {
    started = true;
    engine_->submit(Request{{}, greedy(4), {}, text}, [&](const RequestUpdate& u) {
      if (!u.finished) return;
      std::lock_guard lock(m);
      long_out = *u.output;
      cv.notify_all();
    });
    submitted = true;
  });
  while (!started) std::this_thread::yield();
  std::this_thread::sleep_for(std::chrono::milliseconds(50));
  const auto short_out = engine_->generate({Request{{}, greedy(8), {}, "hello"}});
  const bool long_still_tokenizing = !submitted;
  long_caller.join();
  EXPECT_EQ(short_out[0].finish_reason, FinishReason::kLength) << short_out[0].error;
  EXPECT_EQ(short_out[0].token_ids.size(), 8u);
  EXPECT_TRUE(long_still_tokenizing)
      << "the short request waited for the long prompt to be tokenized";
  std::unique_lock lock(m);
  ASSERT_TRUE(cv.wait_for(lock, std::chrono::seconds(60), [&] { return long_out.has_value(); }));
  EXPECT_EQ(long_out->finish_reason, FinishReason::kError);
  EXPECT_THAT(long_out->error, HasSubstr("max_model_len"));
}

// Llama-2's tokenizer adds BOS: tokenizer()->encode(text) must give the very ids (and so
// the prefix-cache keys) the engine uses for the text, as Hugging Face's tokenizer(text)
// does. (encode used to default to no special tokens: no BOS, other keys.)
TEST(EngineTextBos, EncodeByDefaultGivesTheIdsOfSendingTheText) {
  testing::TempDir dir;
  model::MakeModelOptions o;
  o.arch = model::Arch::kLlama;
  o.out_dir = dir.path();
  o.tokenizer = testing::test_data_dir() / "tokenizers/llama2_style";
  model::make_model(o);
  EngineConfig c;
  c.model_dir = dir.path().string();
  c.device = Device::kCpu;
  c.kv_cache_bytes = 4 << 20;
  Engine engine(c);
  const Tokenizer* tok = engine.tokenizer();
  ASSERT_NE(tok, nullptr);
  const std::string text = "Hello world, the quick brown fox";
  const auto ids = tok->encode(text);
  ASSERT_FALSE(ids.empty());
  EXPECT_EQ(ids.front(), tok->token_to_id("<s>"));  // the post-processor's BOS
  EXPECT_EQ(ids, tok->encode(text, /*add_special_tokens=*/true));
  EXPECT_NE(ids, tok->encode(text, /*add_special_tokens=*/false));
  const auto by_text = engine.generate({Request{{}, greedy(2), {}, text}})[0];
  ASSERT_EQ(by_text.finish_reason, FinishReason::kLength) << by_text.error;
  EXPECT_EQ(by_text.prompt_token_ids, ids);
}

TEST(EngineTextNoTokenizer, TextPromptsAndStopStringsNeedATokenizer) {
  testing::TempDir dir;
  model::MakeModelOptions o;
  o.out_dir = dir.path();
  model::make_model(o);
  EngineConfig c;
  c.model_dir = dir.path().string();
  c.kv_cache_bytes = 1 << 20;
  Engine engine(c);
  EXPECT_EQ(engine.tokenizer(), nullptr);
  SamplingParams p;
  p.stop = {"x"};
  auto outputs = engine.generate({Request{{}, {}, {}, "hello"}, Request{{1, 2}, p, {}, {}}});
  EXPECT_THAT(outputs[0].error, HasSubstr("tokenizer.json"));
  EXPECT_THAT(outputs[1].error, HasSubstr("tokenizer.json"));
  EXPECT_TRUE(outputs[0].text.empty());
}

}  // namespace
}  // namespace cachet
