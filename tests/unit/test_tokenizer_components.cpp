// Each tokenizer.json component on its own: normalizers, pre-tokenizer splits, BPE merge
// order and byte fallback, added-token flags, post-processor templates, decoders.
#include <gtest/gtest.h>

#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "cachet/tokenizer.h"
#include "support/test_support.h"
#include "tokenizer/added_tokens.h"
#include "tokenizer/bpe.h"
#include "tokenizer/components.h"
#include "tokenizer/unicode.h"

namespace cachet::tokenizer {
namespace {

using nlohmann::json;
const JsonPath kAt{"test.json", ""};

std::string normalize(const json& j, std::string text) {
  make_normalizer(j, kAt)->normalize(text);
  return text;
}

std::vector<std::string> split(const json& j, const std::string& text, bool at_start = true) {
  std::vector<Piece> out;
  VectorSink sink(out);
  make_pre_tokenizer(j, kAt)->split(Piece{text, at_start}, sink);
  std::vector<std::string> texts;
  for (auto& p : out) texts.push_back(p.text);
  return texts;
}

std::string decode(const json& j, std::vector<std::string> tokens) {
  make_decoder(j, kAt)->decode_chain(tokens);
  std::string s;
  for (auto& t : tokens) s += t;
  return s;
}

TEST(Normalizers, UnicodeForms) {
  EXPECT_EQ(normalize({{"type", "NFC"}}, "e\u0301"), "\u00e9");
  EXPECT_EQ(normalize({{"type", "NFD"}}, "\u00e9"), "e\u0301");
  EXPECT_EQ(normalize({{"type", "NFKC"}}, "\ufb01 \u2460 x\u00b2"), "fi 1 x2");
  EXPECT_EQ(normalize({{"type", "NFKD"}}, "\u00e9\ufb01"), "e\u0301fi");
  EXPECT_EQ(normalize({{"type", "NFC"}}, "plain ascii"), "plain ascii");
}

TEST(Normalizers, LowercaseStripPrependReplaceSequence) {
  EXPECT_EQ(normalize({{"type", "Lowercase"}}, "HeLLo \u0130 \u03a3"), "hello i\u0307 \u03c3");
  EXPECT_EQ(
      normalize({{"type", "Strip"}, {"strip_left", true}, {"strip_right", false}}, " \t x \u3000"),
      "x \u3000");
  EXPECT_EQ(
      normalize({{"type", "Strip"}, {"strip_left", true}, {"strip_right", true}}, "\n x \u3000"),
      "x");
  EXPECT_EQ(normalize({{"type", "Prepend"}, {"prepend", "\u2581"}}, "hi"), "\u2581hi");
  EXPECT_EQ(normalize({{"type", "Prepend"}, {"prepend", "\u2581"}}, ""), "");
  EXPECT_EQ(normalize({{"type", "Replace"}, {"pattern", {{"String", " "}}}, {"content", "\u2581"}},
                      "a b  c"),
            "a\u2581b\u2581\u2581c");
  EXPECT_EQ(normalize({{"type", "Replace"}, {"pattern", {{"Regex", "\\s+"}}}, {"content", " "}},
                      "a \t\n b"),
            "a b");
  const json seq = {{"type", "Sequence"},
                    {"normalizers", {{{"type", "NFKC"}}, {{"type", "Lowercase"}}}}};
  EXPECT_EQ(normalize(seq, "\uff21BC"), "abc");
  EXPECT_EQ(normalize({{"type", "StripAccents"}}, "e\u0301a\u0300"), "ea");
}

TEST(PreTokenizers, SplitBehaviors) {
  auto with = [](const char* behavior, bool invert = false) {
    return json{{"type", "Split"},
                {"pattern", {{"String", "-"}}},
                {"behavior", behavior},
                {"invert", invert}};
  };
  using V = std::vector<std::string>;
  EXPECT_EQ(split(with("Removed"), "a-b--c-"), (V{"a", "b", "c"}));
  EXPECT_EQ(split(with("Isolated"), "a-b--c-"), (V{"a", "-", "b", "-", "-", "c", "-"}));
  EXPECT_EQ(split(with("MergedWithPrevious"), "a-b--c-"), (V{"a-", "b-", "-", "c-"}));
  EXPECT_EQ(split(with("MergedWithNext"), "-a-b--c"), (V{"-a", "-b", "-", "-c"}));
  EXPECT_EQ(split(with("Contiguous"), "a-b--c-"), (V{"a", "-", "b", "--", "c", "-"}));
  EXPECT_EQ(split(with("Removed", true), "a-b--c-"), (V{"-", "-", "-", "-"}));
}

TEST(PreTokenizers, LookaheadRegexes) {
  // Qwen2/3 pattern: trailing whitespace before a word stays with the word ("\s+(?!\S)").
  const json qwen = {
      {"type", "Split"},
      {"pattern",
       {{"Regex",
         R"((?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+)"}}},
      {"behavior", "Isolated"},
      {"invert", false}};
  using V = std::vector<std::string>;
  EXPECT_EQ(split(qwen, "Hello   world"), (V{"Hello", "  ", " world"}));
  EXPECT_EQ(split(qwen, "I'LL 123"), (V{"I", "'LL", " ", "1", "2", "3"}));
  EXPECT_EQ(split(qwen, "a\r\n\r\nb"), (V{"a", "\r\n\r\n", "b"}));
  EXPECT_EQ(split(qwen, "x  "), (V{"x", "  "}));
  // ByteLevel with the GPT-2 regex maps bytes to the printable alphabet (space -> U+0120).
  const json gpt2 = {{"type", "ByteLevel"}, {"add_prefix_space", false}, {"use_regex", true}};
  EXPECT_EQ(split(gpt2, "Hi  there\n"), (V{"Hi", "\u0120", "\u0120there", "\u010a"}));
  const json prefix = {{"type", "ByteLevel"}, {"add_prefix_space", true}, {"use_regex", false}};
  EXPECT_EQ(split(prefix, "Hi"), (V{"\u0120Hi"}));
}

TEST(PreTokenizers, DigitsMetaspaceWhitespacePunctuation) {
  using V = std::vector<std::string>;
  EXPECT_EQ(split({{"type", "Digits"}, {"individual_digits", true}}, "a123b"),
            (V{"a", "1", "2", "3", "b"}));
  EXPECT_EQ(split({{"type", "Digits"}, {"individual_digits", false}}, "a123b"),
            (V{"a", "123", "b"}));
  const json meta = {{"type", "Metaspace"},
                     {"replacement", "\u2581"},
                     {"prepend_scheme", "first"},
                     {"split", true}};
  EXPECT_EQ(split(meta, "Hey you", true), (V{"\u2581Hey", "\u2581you"}));
  EXPECT_EQ(split(meta, "Hey you", false), (V{"Hey", "\u2581you"}));
  const json never = {{"type", "Metaspace"},
                      {"replacement", "\u2581"},
                      {"prepend_scheme", "never"},
                      {"split", false}};
  EXPECT_EQ(split(never, "a b"), (V{"a\u2581b"}));
  EXPECT_EQ(split({{"type", "Whitespace"}}, "Hi, you!"), (V{"Hi", ",", "you", "!"}));
  EXPECT_EQ(split({{"type", "WhitespaceSplit"}}, " a\tb\u3000c "), (V{"a", "b", "c"}));
  EXPECT_EQ(split({{"type", "Punctuation"}}, "a,b!"), (V{"a", ",", "b", "!"}));
}

json bpe_json(json vocab, json merges) {
  return {{"type", "BPE"}, {"vocab", vocab}, {"merges", merges}};
}

std::vector<TokenId> bpe(const json& j, std::string_view text) {
  Bpe model(j, kAt);
  std::vector<TokenId> out;
  model.tokenize(text, out);
  model.tokenize(text, out);  // the second call is served by the cache
  out.resize(out.size() / 2);
  return out;
}

TEST(BpeModel, MergesApplyByRankNotPosition) {
  const json vocab = {{"a", 0}, {"b", 1}, {"c", 2}, {"ab", 3}, {"bc", 4}, {"abc", 5}};
  // "b c" ranks first, so "abc" is a + bc and then no merge of (a, bc) exists.
  EXPECT_EQ(bpe(bpe_json(vocab, json::array({"b c", "a b"})), "abc"), (std::vector<TokenId>{0, 4}));
  EXPECT_EQ(bpe(bpe_json(vocab, json::array({"a b", "b c", "ab c"})), "abc"),
            (std::vector<TokenId>{5}));
  // Pair form of merges, and leftmost first among equal ranks.
  EXPECT_EQ(bpe(bpe_json({{"a", 0}, {"aa", 1}}, json::array({json::array({"a", "a"})})), "aaa"),
            (std::vector<TokenId>{1, 0}));
}

TEST(BpeModel, ByteFallbackUnkAndIgnoreMerges) {
  json vocab = {{"<unk>", 0}, {"a", 1}, {"<0xC3>", 2}, {"<0xA9>", 3}, {"ab", 4}, {"b", 5}};
  json j = bpe_json(vocab, json::array());
  j["byte_fallback"] = true;
  j["unk_token"] = "<unk>";
  EXPECT_EQ(bpe(j, "a\u00e9"), (std::vector<TokenId>{1, 2, 3}));  // é = C3 A9
  EXPECT_EQ(bpe(j, "a\u4e2d"), (std::vector<TokenId>{1, 0}));     // no <0xE4>: unk
  j["byte_fallback"] = false;
  j["fuse_unk"] = true;
  EXPECT_EQ(bpe(j, "xya"), (std::vector<TokenId>{0, 1}));
  j["fuse_unk"] = false;
  EXPECT_EQ(bpe(j, "xya"), (std::vector<TokenId>{0, 0, 1}));
  json ignore = bpe_json(vocab, json::array());
  EXPECT_EQ(bpe(ignore, "ab"), (std::vector<TokenId>{1, 5}));
  ignore["ignore_merges"] = true;
  EXPECT_EQ(bpe(ignore, "ab"), (std::vector<TokenId>{4}));
}

TEST(BpeModel, SubwordPrefixAndSuffix) {
  json j = bpe_json({{"a", 0}, {"##b", 1}, {"ab", 2}, {"##c", 3}}, json::array({"a ##b"}));
  j["continuing_subword_prefix"] = "##";
  EXPECT_EQ(bpe(j, "abc"), (std::vector<TokenId>{2, 3}));
  json s = bpe_json({{"a", 0}, {"b</w>", 1}, {"ab</w>", 2}}, json::array({"a b</w>"}));
  s["end_of_word_suffix"] = "</w>";
  EXPECT_EQ(bpe(s, "ab"), (std::vector<TokenId>{2}));
}

std::vector<TextSegment> segments(const std::vector<AddedToken>& tokens, std::string_view text) {
  AddedVocabulary vocab(tokens, nullptr);
  std::vector<TextSegment> out;
  vocab.split(text, false, out);
  return out;
}

std::string render(const std::vector<TextSegment>& segs) {
  std::string s;
  for (const auto& seg : segs)
    s += (seg.id ? "[" + std::string(seg.text) + "]" : std::string(seg.text)) + "|";
  return s;
}

TEST(AddedTokens, MatchingFlags) {
  AddedToken plain{10, "<x>"};
  EXPECT_EQ(render(segments({plain}, "a <x> b<x>")), "a |[<x>]| b|[<x>]|");
  AddedToken lstrip = plain;
  lstrip.lstrip = true;
  EXPECT_EQ(render(segments({lstrip}, "a  <x> b")), "a|[  <x>]| b|");
  AddedToken rstrip = plain;
  rstrip.rstrip = true;
  EXPECT_EQ(render(segments({rstrip}, "a <x>\t b")), "a |[<x>\t ]|b|");
  AddedToken word{11, "cat"};
  word.single_word = true;
  EXPECT_EQ(render(segments({word}, "cat concat cats cat.")), "[cat]| concat cats |[cat]|.|");
  // Leftmost-longest between overlapping tokens.
  EXPECT_EQ(render(segments({AddedToken{1, "<a>"}, AddedToken{2, "<a><b>"}}, "x<a><b>")),
            "x|[<a><b>]|");
}

TEST(AddedTokens, NormalizedTokensMatchNormalizedText) {
  const auto lower = make_normalizer({{"type", "Lowercase"}}, kAt);
  AddedToken tok{5, "<MyTok>"};
  tok.normalized = true;
  AddedVocabulary vocab({tok}, lower.get());
  std::vector<TextSegment> out;
  vocab.split("a<mytok>b", true, out);
  EXPECT_EQ(render(out), "a|[<mytok>]|b|");
}

TEST(PostProcessors, TemplateAndBert) {
  const json tmpl = {{"type", "TemplateProcessing"},
                     {"single",
                      {{{"SpecialToken", {{"id", "<s>"}, {"type_id", 0}}}},
                       {{"Sequence", {{"id", "A"}, {"type_id", 0}}}},
                       {{"SpecialToken", {{"id", "</s>"}, {"type_id", 0}}}}}},
                     {"special_tokens",
                      {{"<s>", {{"id", "<s>"}, {"ids", {1}}, {"tokens", {"<s>"}}}},
                       {"</s>", {{"id", "</s>"}, {"ids", {2, 3}}, {"tokens", {"</s>", "x"}}}}}}};
  std::vector<TokenId> ids = {7, 8};
  make_post_processor(tmpl, kAt)->process(ids, true);
  EXPECT_EQ(ids, (std::vector<TokenId>{1, 7, 8, 2, 3}));
  ids = {7};
  make_post_processor(tmpl, kAt)->process(ids, false);
  EXPECT_EQ(ids, (std::vector<TokenId>{7}));
  ids = {7};
  make_post_processor(
      {{"type", "BertProcessing"}, {"sep", {"[SEP]", 102}}, {"cls", {"[CLS]", 101}}}, kAt)
      ->process(ids, true);
  EXPECT_EQ(ids, (std::vector<TokenId>{101, 7, 102}));
}

TEST(Decoders, Each) {
  EXPECT_EQ(decode({{"type", "ByteLevel"}}, {"Hello", "\u0120w\u00c3\u00b6rld", "\u010a"}),
            "Hello w\u00f6rld\n");
  EXPECT_EQ(decode({{"type", "ByteLevel"}}, {"\u00e4\u00b8"}), "\ufffd");  // truncated UTF-8
  EXPECT_EQ(decode({{"type", "ByteFallback"}}, {"a", "<0xC3>", "<0xA9>", "<0xC3>", "b"}),
            "a\ufffd\ufffd\ufffdb");  // the run C3 A9 C3 is not valid UTF-8 as a whole
  EXPECT_EQ(
      decode({{"type", "Strip"}, {"content", " "}, {"start", 1}, {"stop", 1}}, {" a ", "  b"}),
      "a b");
  EXPECT_EQ(decode({{"type", "Replace"}, {"pattern", {{"String", "\u2581"}}}, {"content", " "}},
                   {"\u2581a\u2581b"}),
            " a b");
  const json meta = {
      {"type", "Metaspace"}, {"replacement", "\u2581"}, {"prepend_scheme", "always"}};
  EXPECT_EQ(decode(meta, {"\u2581Hey", "\u2581you"}), "Hey you");
  const json llama = {
      {"type", "Sequence"},
      {"decoders",
       {{{"type", "Replace"}, {"pattern", {{"String", "\u2581"}}}, {"content", " "}},
        {{"type", "ByteFallback"}},
        {{"type", "Fuse"}},
        {{"type", "Strip"}, {"content", " "}, {"start", 1}, {"stop", 0}}}}};
  EXPECT_EQ(decode(llama, {"\u2581Hi", "<0xE2>", "<0x9C>", "<0x93>", "\u2581there"}),
            "Hi\u2713 there");
  EXPECT_EQ(decode({{"type", "BPEDecoder"}, {"suffix", "</w>"}}, {"a</w>", "b</w>"}), "a b");
}

TEST(Unicode, InvalidUtf8IsReplaced) {
  EXPECT_TRUE(is_valid_utf8("h\u00e9llo \U0001F600"));
  EXPECT_FALSE(is_valid_utf8("\xC0\xAF"));
  EXPECT_FALSE(is_valid_utf8("\xED\xA0\x80"));  // a surrogate
  EXPECT_EQ(to_valid_utf8("a\xFF"
                          "b"),
            "a\ufffd"
            "b");
  EXPECT_EQ(to_valid_utf8("\xE4\xB8"), "\ufffd");  // a truncated sequence is one U+FFFD
  EXPECT_EQ(to_valid_utf8("\xF0\x9F\x98"
                          "x\x80"),
            "\ufffdx\ufffd");
}

}  // namespace
}  // namespace cachet::tokenizer
