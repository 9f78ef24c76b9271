// UTF-8 and Unicode helpers for the tokenizer: decoding, the lossy repair of invalid input,
// the character classes Hugging Face `tokenizers` uses (Rust's char predicates), Unicode
// normalization through utf8proc, and GPT-2's byte-to-character table.
#pragma once

#include <array>
#include <cstdint>
#include <string>
#include <string_view>

namespace cachet::tokenizer {

// Decodes the code point at s[i] and advances i. `s` must be valid UTF-8.
inline char32_t next_code_point(std::string_view s, std::size_t& i) {
  const auto b0 = static_cast<unsigned char>(s[i]);
  if (b0 < 0x80) {
    ++i;
    return b0;
  }
  int len = b0 >= 0xF0 ? 4 : b0 >= 0xE0 ? 3 : 2;
  char32_t cp = b0 & (0x7F >> len);
  for (int k = 1; k < len; ++k) cp = (cp << 6) | (static_cast<unsigned char>(s[i + k]) & 0x3F);
  i += len;
  return cp;
}

// Length in bytes of the UTF-8 sequence that starts with `lead` (1 for stray bytes).
inline int utf8_length(unsigned char lead) {
  return lead < 0xC0 ? 1 : lead < 0xE0 ? 2 : lead < 0xF0 ? 3 : 4;
}

void append_utf8(std::string& out, char32_t cp);

// Whether `s` is well-formed UTF-8 (no overlongs, surrogates or values past U+10FFFF).
bool is_valid_utf8(std::string_view s);
// `s` with every maximal invalid subsequence replaced by U+FFFD (Rust's from_utf8_lossy).
std::string to_valid_utf8(std::string_view s);

// Rust's char::is_whitespace (the White_Space property).
bool is_whitespace(char32_t c);
// Rust regex's \w: letters, marks, decimal and letter numbers, connector punctuation.
bool is_word_char(char32_t c);
// Rust's char::is_numeric: general categories Nd, Nl, No.
bool is_numeric(char32_t c);
// Rust's is_ascii_punctuation() || is_punctuation() (general categories P*).
bool is_punctuation(char32_t c);

enum class NormalForm { kNfc, kNfd, kNfkc, kNfkd };
std::string normalize_unicode(std::string_view s, NormalForm form);
// Per-character full lowercase mapping (Rust's char::to_lowercase, as `tokenizers` applies it).
std::string to_lowercase(std::string_view s);
// Removes combining marks (general categories Mn, Mc, Me), as StripAccents does.
std::string strip_accents(std::string_view s);

// GPT-2's reversible map from bytes to printable characters (byte-level BPE alphabet).
// byte_to_char()[b] is the UTF-8 of the character standing for byte b.
const std::array<std::string, 256>& byte_to_char();
// The byte a byte-level character stands for, or -1 when `c` is not in the alphabet.
int char_to_byte(char32_t c);

}  // namespace cachet::tokenizer
