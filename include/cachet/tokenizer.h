// cachet — text to token ids and back, exactly as Hugging Face `tokenizers` does it.
//
// A Tokenizer is loaded from a Hugging Face `tokenizer.json` (or a model directory holding
// one, plus the optional tokenizer_config.json and generation_config.json). It is immutable
// after loading: encode/decode are const and safe to call from many threads at once, and
// copies are cheap (they share the loaded state).
//
// Input text that is not valid UTF-8 is not rejected: every maximal invalid byte sequence is
// replaced by U+FFFD before tokenization (the same rule as Rust's String::from_utf8_lossy,
// which is what a Rust caller of `tokenizers` would have to do first).
//
// Supported: BPE models (byte-level as GPT-2/Llama-3/Qwen, byte-fallback as Llama-2/Mistral)
// with the normalizers, pre-tokenizers, post-processors and decoders they use. Anything else
// in a tokenizer.json (a WordPiece or Unigram model, an unknown normalizer type, ...) fails
// loading with Error(kUnsupported) naming the component and the file: never an approximation.
// The "truncation" and "padding" sections of a tokenizer.json are ignored: they shape
// batches for training, and an inference engine needs every token of the prompt.
#pragma once

#include <cstddef>
#include <filesystem>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "cachet/types.h"

namespace cachet {

class CACHET_API Tokenizer {
 public:
  // `path` is a tokenizer.json file or a directory holding one. Next to it, when present,
  // tokenizer_config.json gives bos_token/eos_token/add_bos_token and generation_config.json
  // gives bos_token_id/eos_token_id. Throws cachet::Error: kNotFound (no such file),
  // kInvalidModel (malformed JSON or a missing/ill-typed field; names file and field),
  // kUnsupported (a component cachet does not implement; names it and the file).
  static Tokenizer from_file(const std::filesystem::path& path);

  Tokenizer(const Tokenizer&);
  Tokenizer& operator=(const Tokenizer&);
  Tokenizer(Tokenizer&&) noexcept;
  Tokenizer& operator=(Tokenizer&&) noexcept;
  ~Tokenizer();

  // Token ids of `text`. Added/special tokens written in the text (e.g. "<|im_start|>") are
  // always matched as whole tokens. `add_special_tokens` applies the post-processor (e.g.
  // Llama's BOS); it does not change how the text itself is split. The default is Hugging
  // Face's tokenizer(text), and what the engine does with a text prompt, so
  // encode(text) gives exactly the ids (and prefix-cache keys) of sending the text.
  std::vector<TokenId> encode(std::string_view text, bool add_special_tokens = true) const;

  // Text of `ids`. Unknown ids are skipped (as Hugging Face does); bytes that do not form
  // valid UTF-8 come out as U+FFFD. With `skip_special_tokens`, added tokens marked special
  // are left out.
  std::string decode(std::span<const TokenId> ids, bool skip_special_tokens = false) const;

  // The vocabulary string of a token (added tokens included), e.g. "Ġthe" or "<|im_end|>".
  std::optional<TokenId> token_to_id(std::string_view token) const;
  std::optional<std::string> id_to_token(TokenId id) const;
  // Whether `id` is an added token marked "special" (skipped by skip_special_tokens).
  bool is_special(TokenId id) const;

  // One past the largest id of the model vocabulary and the added tokens; every id the
  // tokenizer can produce is below it (the model's embedding table may be larger).
  std::size_t vocab_size() const;

  // Beginning-of-sequence token: generation_config.json bos_token_id, else the
  // tokenizer_config.json bos_token; nullopt when neither names one.
  std::optional<TokenId> bos_token_id() const;
  // End-of-sequence tokens: generation_config.json eos_token_id (an id or a list), then the
  // tokenizer_config.json eos_token when not already listed. May be empty.
  const std::vector<TokenId>& eos_token_ids() const;
  // tokenizer_config.json add_bos_token (false when absent). Informational: encode() with
  // add_special_tokens follows the tokenizer.json post-processor, as Hugging Face does.
  bool add_bos_token() const;

  struct CACHET_HIDDEN Impl;

 private:
  explicit Tokenizer(std::shared_ptr<const Impl> impl);
  std::shared_ptr<const Impl> impl_;
  friend class StreamDecoder;
};

// Incremental decoding for streaming output: push ids one at a time and get back the text
// they add. The concatenation of all push() results and flush() equals
// tokenizer.decode(all ids, skip_special_tokens), and every returned piece is valid UTF-8:
// text that may still change (an incomplete UTF-8 sequence, a byte-fallback run, a leading
// space a decoder may strip) is held back until the next ids settle it. (A byte-fallback run
// is held until a token that is not a byte ends it, since one invalid byte turns the whole
// run into U+FFFD.) Not thread-safe;
// use one per stream. It keeps its own reference to the tokenizer's state.
class CACHET_API StreamDecoder {
 public:
  StreamDecoder(const Tokenizer& tokenizer, bool skip_special_tokens);

  // The new text produced by `id`, possibly empty.
  std::string push(TokenId id);
  // Whatever is still held back (call at the end of the stream); resets the decoder.
  std::string flush();

 private:
  bool in_byte_run() const;

  std::shared_ptr<const Tokenizer::Impl> impl_;
  bool skip_special_tokens_;
  std::vector<TokenId> ids_;
  // ids_[prefix_, read_) was already emitted and is decoded again as context, so decoders
  // that look at their first token (Metaspace, Strip) treat the new ids the same way
  // decode() of the whole sequence would.
  std::size_t prefix_ = 0;
  std::size_t read_ = 0;
};

}  // namespace cachet
