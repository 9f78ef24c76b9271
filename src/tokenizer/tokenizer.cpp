// Loading a tokenizer.json (plus tokenizer_config.json / generation_config.json) and the
// encode/decode pipelines that tie the components together.
#include "cachet/tokenizer.h"

#include <algorithm>
#include <fstream>
#include <sstream>

#include "cachet/errors.h"
#include "tokenizer/tokenizer_impl.h"
#include "tokenizer/unicode.h"
#include "util/json_depth.h"

namespace cachet {

using tokenizer::Json;
using tokenizer::JsonPath;

namespace {

namespace fs = std::filesystem;

Json read_json(const fs::path& path) {
  std::error_code ec;
  if (fs::exists(path, ec) && !fs::is_regular_file(path, ec)) {
    // A directory reads as empty text; a FIFO or a device could block forever.
    throw Error(ErrorCode::kInvalidModel, path.string() + ": not a regular file");
  }
  std::ifstream in(path, std::ios::binary);
  if (!in) throw Error(ErrorCode::kNotFound, path.string() + ": cannot open file");
  std::stringstream buffer;
  buffer << in.rdbuf();
  if (util::json_nests_too_deep(buffer.view())) {
    throw Error(ErrorCode::kInvalidModel, path.string() + ": JSON nested deeper than " +
                                              std::to_string(util::kMaxJsonDepth) + " levels");
  }
  try {
    return Json::parse(buffer.str());
  } catch (const Json::exception& e) {
    throw Error(ErrorCode::kInvalidModel, path.string() + ": malformed JSON: " + e.what());
  }
}

std::vector<tokenizer::AddedToken> parse_added_tokens(const Json& root, const JsonPath& at) {
  std::vector<tokenizer::AddedToken> tokens;
  const Json* list = tokenizer::optional_field(root, "added_tokens");
  if (list == nullptr) return tokens;
  if (!list->is_array()) (at / "added_tokens").invalid("expected an array");
  for (std::size_t i = 0; i < list->size(); ++i) {
    const Json& item = (*list)[i];
    const JsonPath item_at = (at / "added_tokens")[i];
    tokenizer::AddedToken token;
    const long long id = tokenizer::int_field(item, "id", item_at);
    if (id < 0 || id > INT32_MAX) (item_at / "id").invalid("id out of range");
    token.id = static_cast<TokenId>(id);
    token.content = tokenizer::string_field(item, "content", item_at);
    token.single_word = tokenizer::bool_or(item, "single_word", false, item_at);
    token.lstrip = tokenizer::bool_or(item, "lstrip", false, item_at);
    token.rstrip = tokenizer::bool_or(item, "rstrip", false, item_at);
    token.special = tokenizer::bool_or(item, "special", false, item_at);
    token.normalized = tokenizer::bool_or(item, "normalized", !token.special, item_at);
    tokens.push_back(std::move(token));
  }
  return tokens;
}

// Ids of added tokens as `tokenizers` assigns them when it loads a file: a token that is
// already in the model vocabulary keeps the model's id, any other one takes the next free
// id after the vocabulary and the added tokens so far. The ids written in the file are not
// consulted; for files saved by `tokenizers` the two agree. "After the vocabulary" is one
// past its largest id: `tokenizers` uses the number of entries, which for a vocabulary with
// gaps in its ids hands an added token the id of a model token, so that one id means two
// things (found by fuzz_tokenizer_json). Real vocabularies have no gaps and get the same ids.
void assign_added_ids(std::vector<tokenizer::AddedToken>& tokens, const tokenizer::Bpe& model) {
  std::vector<tokenizer::AddedToken> kept;
  std::optional<TokenId> max_added;
  const auto vocab_count = static_cast<TokenId>(model.id_limit());
  for (auto& token : tokens) {
    if (token.content.empty()) continue;
    const auto same = std::find_if(kept.begin(), kept.end(),
                                   [&](const auto& t) { return t.content == token.content; });
    if (same != kept.end()) {
      token.id = same->id;  // a repeated content keeps its first id, with the new flags
      *same = token;
      continue;
    }
    if (const auto id = model.token_to_id(token.content)) {
      token.id = *id;
    } else if (!max_added) {
      token.id = vocab_count;
    } else {
      token.id = *max_added >= vocab_count || vocab_count == 0 ? *max_added + 1 : vocab_count;
    }
    max_added = std::max(max_added.value_or(token.id), token.id);
    kept.push_back(token);
  }
  tokens = std::move(kept);
}

std::unique_ptr<tokenizer::Bpe> make_model(const Json& root, const JsonPath& at) {
  const JsonPath model_at = at / "model";
  const Json& model = tokenizer::field(root, "model", at);
  if (!model.is_object()) model_at.invalid("expected an object");
  // Old files leave out the type of a BPE model; the merges say what it is.
  std::string type = tokenizer::string_or(model, "type", "", model_at);
  if (type.empty() && model.contains("merges")) type = "BPE";
  if (type != "BPE") {
    (model_at / "type")
        .unsupported("unsupported model type '" + type +
                     "' (cachet implements BPE tokenizers only)");
  }
  return std::make_unique<tokenizer::Bpe>(model, model_at);
}

// A token named in tokenizer_config.json: "<s>" or {"content": "<s>", ...}.
std::optional<std::string> config_token(const Json& config, std::string_view key,
                                        const JsonPath& at) {
  const Json* value = tokenizer::optional_field(config, key);
  if (value == nullptr) return std::nullopt;
  if (value->is_string()) return value->get<std::string>();
  if (value->is_object()) return tokenizer::string_field(*value, "content", at / key);
  (at / key).invalid("expected a string or an object with \"content\"");
}

void read_special_ids(const fs::path& dir, const Tokenizer& tok, Tokenizer::Impl& impl) {
  // generation_config.json first: it is what the model's authors generate with.
  const fs::path gen_path = dir / "generation_config.json";
  if (fs::exists(gen_path)) {
    const Json gen = read_json(gen_path);
    const JsonPath at{gen_path.string(), ""};
    if (const Json* bos = tokenizer::optional_field(gen, "bos_token_id")) {
      impl.bos = tokenizer::token_id(*bos, at / "bos_token_id");
    }
    if (const Json* eos = tokenizer::optional_field(gen, "eos_token_id")) {
      if (eos->is_number_integer()) {
        impl.eos.push_back(tokenizer::token_id(*eos, at / "eos_token_id"));
      } else if (eos->is_array()) {
        for (std::size_t i = 0; i < eos->size(); ++i) {
          impl.eos.push_back(tokenizer::token_id((*eos)[i], (at / "eos_token_id")[i]));
        }
      } else {
        (at / "eos_token_id").invalid("expected an integer or a list of integers");
      }
    }
  }
  const fs::path config_path = dir / "tokenizer_config.json";
  if (fs::exists(config_path)) {
    const Json config = read_json(config_path);
    const JsonPath at{config_path.string(), ""};
    impl.add_bos = tokenizer::bool_or(config, "add_bos_token", false, at);
    if (const auto bos = config_token(config, "bos_token", at); bos && !impl.bos) {
      impl.bos = tok.token_to_id(*bos);
    }
    if (const auto eos = config_token(config, "eos_token", at)) {
      if (const auto id = tok.token_to_id(*eos)) {
        if (std::find(impl.eos.begin(), impl.eos.end(), *id) == impl.eos.end()) {
          impl.eos.push_back(*id);
        }
      }
    }
  }
}

// Hands each pre-tokenized piece straight to the model.
class ToModel final : public tokenizer::PieceSink {
 public:
  ToModel(const tokenizer::Bpe& model, std::vector<TokenId>& out) : model_(model), out_(out) {}
  void operator()(tokenizer::Piece&& piece) override { model_.tokenize(piece.text, out_); }

 private:
  const tokenizer::Bpe& model_;
  std::vector<TokenId>& out_;
};

}  // namespace

Tokenizer Tokenizer::from_file(const std::filesystem::path& path) {
  fs::path file = path;
  if (fs::is_directory(file)) file /= "tokenizer.json";
  if (!fs::exists(file)) throw Error(ErrorCode::kNotFound, file.string() + ": no such file");
  const Json root = read_json(file);
  const JsonPath at{file.string(), ""};
  if (!root.is_object()) at.invalid("expected a JSON object");

  auto impl = std::make_shared<Impl>();
  impl->file = file.string();
  if (const Json* j = tokenizer::optional_field(root, "normalizer")) {
    impl->normalizer = tokenizer::make_normalizer(*j, at / "normalizer");
  }
  if (const Json* j = tokenizer::optional_field(root, "pre_tokenizer")) {
    impl->pre_tokenizer = tokenizer::make_pre_tokenizer(*j, at / "pre_tokenizer");
  }
  impl->model = make_model(root, at);
  if (const Json* j = tokenizer::optional_field(root, "post_processor")) {
    impl->post_processor = tokenizer::make_post_processor(*j, at / "post_processor");
  }
  if (const Json* j = tokenizer::optional_field(root, "decoder")) {
    impl->decoder = tokenizer::make_decoder(*j, at / "decoder");
  }
  auto added_tokens = parse_added_tokens(root, at);
  assign_added_ids(added_tokens, *impl->model);
  impl->added =
      std::make_unique<tokenizer::AddedVocabulary>(std::move(added_tokens), impl->normalizer.get());
  impl->vocab_size = impl->model->id_limit();
  for (const auto& token : impl->added->tokens()) {
    impl->vocab_size = std::max(impl->vocab_size, static_cast<std::size_t>(token.id) + 1);
  }
  // A post-processor's ids are written literally in the file and need not be in the
  // vocabulary (found by fuzz_tokenizer_json); they are ids encode() produces all the same.
  if (impl->post_processor) {
    std::vector<TokenId> added_ids;
    impl->post_processor->process(added_ids, /*add_special_tokens=*/true);
    for (const TokenId id : added_ids)
      impl->vocab_size = std::max(impl->vocab_size, static_cast<std::size_t>(id) + 1);
  }

  Tokenizer tok(impl);
  read_special_ids(file.parent_path(), tok, *impl);
  return tok;
}

Tokenizer::Tokenizer(std::shared_ptr<const Impl> impl) : impl_(std::move(impl)) {}
Tokenizer::Tokenizer(const Tokenizer&) = default;
Tokenizer& Tokenizer::operator=(const Tokenizer&) = default;
Tokenizer::Tokenizer(Tokenizer&&) noexcept = default;
Tokenizer& Tokenizer::operator=(Tokenizer&&) noexcept = default;
Tokenizer::~Tokenizer() = default;

void Tokenizer::Impl::encode_text(std::string_view text, std::vector<TokenId>& out) const {
  // 1. Added tokens written in the raw text. 2. Each text segment is normalized, then
  // searched for the added tokens that match normalized text. 3. Pre-tokenization and BPE.
  std::vector<tokenizer::TextSegment> raw, normalized_segments;
  added->split(text, /*normalized_pass=*/false, raw);
  std::string normalized;
  for (const auto& segment : raw) {
    if (segment.id) {
      out.push_back(*segment.id);
      continue;
    }
    normalized.assign(segment.text);
    if (normalizer) normalizer->normalize(normalized);
    normalized_segments.clear();
    if (added->has_normalized_tokens()) {
      added->split(normalized, /*normalized_pass=*/true, normalized_segments);
    } else if (!normalized.empty()) {
      normalized_segments.push_back({normalized, std::nullopt, 0});
    }
    for (const auto& part : normalized_segments) {
      if (part.id) {
        out.push_back(*part.id);
        continue;
      }
      tokenizer::Piece piece{std::string(part.text), segment.offset == 0 && part.offset == 0};
      if (pre_tokenizer) {
        ToModel sink(*model, out);
        pre_tokenizer->split(std::move(piece), sink);
      } else {
        model->tokenize(piece.text, out);
      }
    }
  }
}

std::vector<TokenId> Tokenizer::encode(std::string_view text, bool add_special_tokens) const {
  std::vector<TokenId> ids;
  ids.reserve(text.size() / 3 + 4);
  if (tokenizer::is_valid_utf8(text)) {
    impl_->encode_text(text, ids);
  } else {
    impl_->encode_text(tokenizer::to_valid_utf8(text), ids);
  }
  if (impl_->post_processor) impl_->post_processor->process(ids, add_special_tokens);
  return ids;
}

const std::string* Tokenizer::Impl::token_of(TokenId id) const {
  if (const auto* token = added->by_id(id)) return &token->content;
  return model->id_to_token(id);
}

std::string Tokenizer::Impl::decode(std::span<const TokenId> ids, bool skip_special_tokens) const {
  std::vector<std::string> tokens;
  tokens.reserve(ids.size());
  for (const TokenId id : ids) {
    if (const auto* token = added->by_id(id)) {
      if (!(skip_special_tokens && token->special)) tokens.push_back(token->content);
    } else if (const std::string* token = model->id_to_token(id)) {
      tokens.push_back(*token);
    }
  }
  std::string text;
  if (decoder) {
    decoder->decode_chain(tokens);
    for (const std::string& t : tokens) text += t;
  } else {
    // Without a decoder `tokenizers` joins the tokens with spaces.
    for (std::size_t i = 0; i < tokens.size(); ++i) {
      if (i > 0) text += ' ';
      text += tokens[i];
    }
  }
  return text;
}

std::string Tokenizer::decode(std::span<const TokenId> ids, bool skip_special_tokens) const {
  return impl_->decode(ids, skip_special_tokens);
}

std::optional<TokenId> Tokenizer::token_to_id(std::string_view token) const {
  if (const auto* added = impl_->added->by_content(token)) return added->id;
  return impl_->model->token_to_id(token);
}

std::optional<std::string> Tokenizer::id_to_token(TokenId id) const {
  if (const std::string* token = impl_->token_of(id)) return *token;
  return std::nullopt;
}

bool Tokenizer::is_special(TokenId id) const {
  const auto* token = impl_->added->by_id(id);
  return token != nullptr && token->special;
}

std::size_t Tokenizer::vocab_size() const { return impl_->vocab_size; }
std::optional<TokenId> Tokenizer::bos_token_id() const { return impl_->bos; }
const std::vector<TokenId>& Tokenizer::eos_token_ids() const { return impl_->eos; }
bool Tokenizer::add_bos_token() const { return impl_->add_bos; }

}  // namespace cachet
