// Property tests with fixed seeds: byte-level round trips, invalid UTF-8 never crashes,
// streaming decode equals whole decode for every family, and concurrent encodes agree.
#include <gtest/gtest.h>

#include <atomic>
#include <map>
#include <random>
#include <string>
#include <thread>
#include <vector>

#include "cachet/tokenizer.h"
#include "support/test_support.h"
#include "tokenizer/unicode.h"

namespace cachet {
namespace {

const Tokenizer& family(const std::string& name) {
  static std::map<std::string, Tokenizer> cache;
  auto it = cache.find(name);
  if (it == cache.end()) {
    it = cache.emplace(name, Tokenizer::from_file(testing::test_data_dir() / "tokenizers" / name))
             .first;
  }
  return it->second;
}

// Random valid UTF-8 drawn from ASCII, Latin-1, combining marks, CJK, emoji, ZWJ, added-token
// fragments and whitespace.
std::string random_text(std::mt19937& rng, bool with_added_tokens = true) {
  static const std::vector<char32_t> ranges[] = {
      {0x20, 0x7E},     {0xA0, 0x17F},      {0x300, 0x36F}, {0x4E00, 0x4FFF},
      {0x3040, 0x30FF}, {0x1F300, 0x1F64F}, {0x400, 0x4FF}, {0x600, 0x6FF},
      {0x900, 0x97F},   {0x200B, 0x200D},   {0x9, 0xD}};
  std::uniform_int_distribution<int> length(0, 60), which(0, std::size(ranges) - 1);
  std::string s;
  const int n = length(rng);
  for (int i = 0; i < n; ++i) {
    const auto& r = ranges[which(rng)];
    std::uniform_int_distribution<char32_t> cp(r[0], r[1]);
    tokenizer::append_utf8(s, cp(rng));
    if (with_added_tokens && rng() % 50 == 0) s += "<|im_start|>";
  }
  return s;
}

// Added tokens are matched before normalization, so the property holds for plain text
// only ("<|im_start|>" + U+0338 would compose to "<|im_start|≯" under NFC of the whole).
TEST(RoundTrip, ByteLevelQwen3DecodesToNfc) {
  const Tokenizer& tok = family("qwen3");
  std::mt19937 rng(42);
  for (int i = 0; i < 3000; ++i) {
    const std::string text = random_text(rng, /*with_added_tokens=*/false);
    const std::string expected = tokenizer::normalize_unicode(text, tokenizer::NormalForm::kNfc);
    ASSERT_EQ(tok.decode(tok.encode(text)), expected) << "seed case " << i;
  }
}

TEST(RoundTrip, InvalidUtf8NeverCrashes) {
  std::mt19937 rng(7);
  for (const char* name : {"qwen3", "llama2_style", "mistral_style", "components_a"}) {
    const Tokenizer& tok = family(name);
    for (int i = 0; i < 1000; ++i) {
      std::string bytes(rng() % 40, '\0');
      for (char& b : bytes) b = static_cast<char>(rng());
      const auto ids = tok.encode(bytes, true);
      // Invalid input is repaired to U+FFFD first, so it encodes like its repaired text.
      EXPECT_EQ(ids, tok.encode(tokenizer::to_valid_utf8(bytes), true));
      EXPECT_TRUE(tokenizer::is_valid_utf8(tok.decode(ids)));
    }
  }
  const Tokenizer& qwen = family("qwen3");
  EXPECT_EQ(qwen.decode(qwen.encode("a\xFF"
                                    "b")),
            "a\ufffd"
            "b");
}

TEST(Streaming, PiecesConcatenateToDecodeAndAreValidUtf8) {
  std::mt19937 rng(3);
  for (const char* name : {"qwen3", "gpt2_style", "llama3_style", "llama2_style", "mistral_style",
                           "components_a", "components_b"}) {
    const Tokenizer& tok = family(name);
    for (int i = 0; i < 300; ++i) {
      const std::string text = random_text(rng);
      const auto ids = tok.encode(text, true);
      for (const bool skip : {false, true}) {
        StreamDecoder stream(tok, skip);
        std::string joined;
        for (const TokenId id : ids) {
          const std::string piece = stream.push(id);
          ASSERT_TRUE(tokenizer::is_valid_utf8(piece)) << name;
          joined += piece;
        }
        joined += stream.flush();
        ASSERT_EQ(joined, tok.decode(ids, skip)) << name << " case " << i;
      }
    }
  }
}

TEST(Streaming, HoldsBackPartialCharacters) {
  // "中" is three byte-fallback tokens in llama2_style: nothing comes out until the last.
  const Tokenizer& tok = family("llama2_style");
  const auto ids = tok.encode("\xE4\xB8\xAD!");  // 中!
  StreamDecoder stream(tok, false);
  std::vector<std::string> pieces;
  for (const TokenId id : ids) pieces.push_back(stream.push(id));
  pieces.push_back(stream.flush());
  std::string joined;
  for (const auto& p : pieces) joined += p;
  EXPECT_EQ(joined, tok.decode(ids));
  for (const auto& p : pieces) EXPECT_EQ(p.find("\ufffd"), std::string::npos);
}

TEST(Concurrency, ManyThreadsEncodeTheSame) {
  const Tokenizer tok = family("qwen3");  // a copy shares the loaded state
  std::mt19937 rng(11);
  std::vector<std::string> texts;
  std::vector<std::vector<TokenId>> expected;
  for (int i = 0; i < 200; ++i) {
    texts.push_back(random_text(rng));
    expected.push_back(tok.encode(texts.back()));
  }
  std::vector<std::thread> threads;
  std::atomic<int> mismatches{0};
  for (int t = 0; t < 4; ++t) {
    threads.emplace_back([&, t] {
      for (int round = 0; round < 5; ++round) {
        for (std::size_t i = t; i < texts.size(); i += 1 + t) {
          if (tok.encode(texts[i]) != expected[i]) ++mismatches;
        }
      }
    });
  }
  for (auto& th : threads) th.join();
  EXPECT_EQ(mismatches.load(), 0);
}

}  // namespace
}  // namespace cachet
