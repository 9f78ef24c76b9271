// The stages of the tokenizer.json pipeline, each built from its JSON object:
//   text -> added-token split -> Normalizer -> PreTokenizer -> model (BPE) -> PostProcessor
//   ids  -> token strings -> Decoder chain -> text
// Every stage is immutable after construction and safe to share between threads.
#pragma once

#include <memory>
#include <string>
#include <vector>

#include "cachet/types.h"
#include "tokenizer/json_fields.h"

namespace cachet::tokenizer {

// A piece of (normalized) text on its way to the model. `at_start`: the piece begins at
// the very start of the input, which Metaspace's prepend_scheme "first" looks at.
struct Piece {
  std::string text;
  bool at_start = false;
};

class Normalizer {
 public:
  virtual ~Normalizer() = default;
  virtual void normalize(std::string& text) const = 0;
};

// Receives pieces one at a time, so that a megabyte of text flows through the pipeline
// piece by piece instead of as a megabyte-sized list of pieces.
class PieceSink {
 public:
  virtual ~PieceSink() = default;
  virtual void operator()(Piece&& piece) = 0;
};

class VectorSink final : public PieceSink {
 public:
  explicit VectorSink(std::vector<Piece>& pieces) : pieces_(pieces) {}
  void operator()(Piece&& piece) override { pieces_.push_back(std::move(piece)); }

 private:
  std::vector<Piece>& pieces_;
};

class PreTokenizer {
 public:
  virtual ~PreTokenizer() = default;
  // Passes the non-empty pieces `piece` splits into to `out`, in order.
  virtual void split(Piece&& piece, PieceSink& out) const = 0;
};

class PostProcessor {
 public:
  virtual ~PostProcessor() = default;
  // Adds the special tokens around one sequence when `add_special_tokens`.
  virtual void process(std::vector<TokenId>& ids, bool add_special_tokens) const = 0;
};

class Decoder {
 public:
  virtual ~Decoder() = default;
  // Rewrites the token strings; the caller concatenates what is left.
  virtual void decode_chain(std::vector<std::string>& tokens) const = 0;
};

// Factories: `json` is the component object (not null); `at` its place for errors.
// Unknown types throw Error(kUnsupported) naming the type, field and file.
std::unique_ptr<Normalizer> make_normalizer(const Json& json, const JsonPath& at);
std::unique_ptr<PreTokenizer> make_pre_tokenizer(const Json& json, const JsonPath& at);
std::unique_ptr<Decoder> make_decoder(const Json& json, const JsonPath& at);
// Token ids of the post-processor's special tokens come from its own JSON.
std::unique_ptr<PostProcessor> make_post_processor(const Json& json, const JsonPath& at);

// A "pattern" object of Split/Replace: {"String": s} (a literal) or {"Regex": r}.
class Regex;
std::unique_ptr<Regex> make_pattern(const Json& json, const JsonPath& at);

}  // namespace cachet::tokenizer
