// The loaded state behind cachet::Tokenizer (shared by Tokenizer copies and StreamDecoders).
#pragma once

#include <memory>
#include <optional>
#include <span>
#include <string>
#include <vector>

#include "cachet/tokenizer.h"
#include "tokenizer/added_tokens.h"
#include "tokenizer/bpe.h"
#include "tokenizer/components.h"

namespace cachet {

struct Tokenizer::Impl {
  std::string file;                                        // the tokenizer.json, for messages
  std::unique_ptr<tokenizer::Normalizer> normalizer;       // may be null
  std::unique_ptr<tokenizer::PreTokenizer> pre_tokenizer;  // may be null
  std::unique_ptr<tokenizer::Bpe> model;
  std::unique_ptr<tokenizer::PostProcessor> post_processor;  // may be null
  std::unique_ptr<tokenizer::Decoder> decoder;               // may be null
  std::unique_ptr<tokenizer::AddedVocabulary> added;

  std::size_t vocab_size = 0;
  std::optional<TokenId> bos;
  std::vector<TokenId> eos;
  bool add_bos = false;

  // Appends the ids of `text` (valid UTF-8) to `out`, before post-processing.
  void encode_text(std::string_view text, std::vector<TokenId>& out) const;
  std::string decode(std::span<const TokenId> ids, bool skip_special_tokens) const;
  const std::string* token_of(TokenId id) const;
};

}  // namespace cachet
