// tokenizer.json loading: the input is the file. A tokenizer that loads must encode and
// decode a few fixed texts (including invalid UTF-8) without failing, give ids below its
// vocab_size, decode to valid UTF-8, and stream-decode to the same text.
#include <cstddef>
#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "cachet/tokenizer.h"
#include "fuzz_util.h"
#include "tokenizer/unicode.h"

using namespace cachet;

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  const auto dir = fuzz::scratch_dir() / "tokenizer";
  std::filesystem::create_directories(dir);
  fuzz::write_file(dir / "tokenizer.json", data, size);
  std::optional<Tokenizer> tok;
  if (!fuzz::accepts([&] { tok = Tokenizer::from_file(dir / "tokenizer.json"); })) return 0;

  static const char* const kTexts[] = {"",
                                       " ",
                                       "Hello, world! 123",
                                       "  leading\tand\r\ntrailing  ",
                                       "naïve café 中文 🙂",
                                       "<|im_start|>user\nhi<|im_end|>",
                                       "a\xFF\xC0\x80z",
                                       "\xE4\xB8"};
  const auto vocab = static_cast<TokenId>(tok->vocab_size());
  for (const char* text : kTexts) {
    for (const bool special : {false, true}) {
      std::vector<TokenId> ids;
      std::string decoded;
      if (!fuzz::accepts([&] {
            ids = tok->encode(text, special);
            decoded = tok->decode(ids);
          }))
        fuzz::bug("a loaded tokenizer failed on encode/decode");
      for (const TokenId id : ids)
        fuzz::require(id >= 0 && id < vocab,
                      "encode gave id " + std::to_string(id) +
                          " outside [0, vocab_size = " + std::to_string(vocab) + ")");
      fuzz::require(tokenizer::is_valid_utf8(decoded), "decode gave invalid UTF-8");
      StreamDecoder stream(*tok, false);
      std::string joined;
      for (const TokenId id : ids) joined += stream.push(id);
      joined += stream.flush();
      if (joined != decoded) {
        std::string ids_text;
        for (const TokenId id : ids) ids_text += std::to_string(id) + " ";
        fuzz::bug("streamed pieces differ from decode(): text '" + std::string(text) + "' ids [" +
                  ids_text + "] decode '" + decoded + "' streamed '" + joined + "'");
      }
    }
  }
  return 0;
}
