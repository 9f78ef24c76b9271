// Tokenizer::encode on arbitrary bytes, with the project's seven tokenizer families. The
// first input byte picks the family and the options, the rest is the text. Checked:
//  - every id is in [0, vocab_size);
//  - invalid UTF-8 encodes exactly like its repaired form (U+FFFD per the from_utf8_lossy rule);
//  - decode() is valid UTF-8, and streaming decode gives the same text;
//  - the byte-level families round-trip: decode(encode(text)) == text (Qwen3: its NFC form)
//    for valid text that holds no added-token markup.
#include <cstddef>
#include <cstdint>
#include <string>
#include <vector>

#include "cachet/tokenizer.h"
#include "fuzz_util.h"
#include "tokenizer/unicode.h"

#ifndef CACHET_TEST_DATA_DIR
#error "CACHET_TEST_DATA_DIR must name tests/data"
#endif

using namespace cachet;

namespace {

struct Family {
  const char* name;
  bool round_trips;  // byte-level with no lossy normalizer
  bool nfc;          // round trip gives the NFC form
};

constexpr Family kFamilies[] = {
    {"qwen3", true, true},          {"gpt2_style", true, false},     {"llama3_style", true, false},
    {"llama2_style", false, false}, {"mistral_style", false, false}, {"components_a", false, false},
    {"components_b", false, false},
};
constexpr int kNumFamilies = static_cast<int>(std::size(kFamilies));

const Tokenizer& tokenizer_of(int family) {
  static const std::vector<Tokenizer> all = [] {
    std::vector<Tokenizer> v;
    for (const Family& f : kFamilies)
      v.push_back(Tokenizer::from_file(std::filesystem::path(CACHET_TEST_DATA_DIR) / "tokenizers" /
                                       f.name));
    return v;
  }();
  return all[static_cast<std::size_t>(family)];
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  fuzz::ByteReader in(data, size);
  const std::uint8_t options = in.byte();
  const int family = options % kNumFamilies;
  const bool add_special = options & 0x10;
  const bool skip_special = options & 0x20;
  const std::string text(in.rest());
  const Tokenizer& tok = tokenizer_of(family);

  std::vector<TokenId> ids;
  std::string decoded;
  if (!fuzz::accepts([&] {
        ids = tok.encode(text, add_special);
        decoded = tok.decode(ids, skip_special);
      }))
    fuzz::bug(std::string("encode/decode threw on ") + kFamilies[family].name);

  const auto vocab = static_cast<TokenId>(tok.vocab_size());
  for (const TokenId id : ids)
    fuzz::require(id >= 0 && id < vocab, "encode gave id " + std::to_string(id) +
                                             " outside [0, vocab_size = " + std::to_string(vocab) +
                                             ")");
  fuzz::require(tokenizer::is_valid_utf8(decoded), "decode gave invalid UTF-8");

  const bool valid = tokenizer::is_valid_utf8(text);
  if (!valid) {
    fuzz::require(ids == tok.encode(tokenizer::to_valid_utf8(text), add_special),
                  "invalid UTF-8 encodes differently from its repaired text");
  }

  StreamDecoder stream(tok, skip_special);
  std::string joined;
  for (const TokenId id : ids) joined += stream.push(id);
  joined += stream.flush();
  fuzz::require(joined == decoded, "streamed pieces differ from decode()");

  // Added tokens are matched before normalization, so markup next to combining marks may
  // compose differently; the round trip is a property of plain text.
  const Family& f = kFamilies[family];
  if (f.round_trips && valid && !add_special && !skip_special &&
      text.find('<') == std::string::npos && text.find('[') == std::string::npos) {
    const std::string expected =
        f.nfc ? tokenizer::normalize_unicode(text, tokenizer::NormalForm::kNfc) : text;
    fuzz::require(decoded == expected, std::string("round trip changed the text (") + f.name + ")");
  }
  return 0;
}
