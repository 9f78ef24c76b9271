#include "tokenizer/bpe.h"

#include <algorithm>
#include <cstdio>

#include "tokenizer/unicode.h"

namespace cachet::tokenizer {

void MergeTable::reserve(std::size_t count) {
  std::size_t capacity = 16;
  while (capacity < count * 2) capacity *= 2;
  entries_.assign(capacity, Entry{});
  mask_ = capacity - 1;
}

void MergeTable::insert(TokenId left, TokenId right, std::uint32_t rank, TokenId merged) {
  const std::uint64_t key = pack(left, right);
  for (std::size_t i = hash(key) & mask_;; i = (i + 1) & mask_) {
    Entry& e = entries_[i];
    if (e.key == kEmpty || e.key == key) {
      e = {key, rank, merged};
      return;
    }
  }
}

// Words seen recently, sharded so that threads encoding at once rarely share a lock. A
// full shard is emptied rather than aged: cheap, and the hot words come back quickly.
struct Bpe::Cache {
  static constexpr std::size_t kShards = 64;
  static constexpr std::size_t kEntriesPerShard = 4096;
  static constexpr std::size_t kMaxWordBytes = 256;
  struct Shard {
    std::mutex mutex;
    std::unordered_map<std::string, std::vector<TokenId>, StringHash, std::equal_to<>> words;
  };
  std::array<Shard, kShards> shards;

  Shard& shard_for(std::size_t hash) { return shards[(hash >> 7) % kShards]; }
};

namespace {

void parse_merge(const Json& merge, const JsonPath& at, std::string& left, std::string& right) {
  if (merge.is_string()) {
    const std::string& s = merge.get_ref<const std::string&>();
    const std::size_t space = s.find(' ');
    if (space == std::string::npos || s.find(' ', space + 1) != std::string::npos) {
      at.invalid("expected \"left right\", got \"" + s + "\"");
    }
    left = s.substr(0, space);
    right = s.substr(space + 1);
  } else if (merge.is_array() && merge.size() == 2 && merge[0].is_string() &&
             merge[1].is_string()) {
    left = merge[0].get<std::string>();
    right = merge[1].get<std::string>();
  } else {
    at.invalid("expected a \"left right\" string or a [left, right] pair");
  }
}

struct Symbol {
  TokenId id;
  std::int32_t prev;
  std::int32_t next;
};

struct Candidate {
  std::uint32_t rank;
  std::int32_t pos;
  TokenId merged;
};

// Min-heap order: lowest rank first, then leftmost position (as `tokenizers` does).
struct CandidateAfter {
  bool operator()(const Candidate& a, const Candidate& b) const {
    return a.rank != b.rank ? a.rank > b.rank : a.pos > b.pos;
  }
};

struct Scratch {
  std::vector<Symbol> symbols;
  std::vector<Candidate> heap;
  std::vector<TokenId> ids;
};

// How far the largest vocabulary id may lie beyond the number of tokens.
constexpr std::int64_t kMaxIdGap = 1 << 20;

}  // namespace

Bpe::Bpe(const Json& json, const JsonPath& at) : cache_(std::make_unique<Cache>()) {
  if (const Json* dropout = optional_field(json, "dropout");
      dropout != nullptr && !(dropout->is_number() && dropout->get<double>() == 0.0)) {
    (at / "dropout").unsupported("BPE dropout is not supported (only null)");
  }
  const Json& vocab = field(json, "vocab", at);
  if (!vocab.is_object()) (at / "vocab").invalid("expected an object of token -> id");
  vocab_.reserve(vocab.size());
  TokenId max_id = -1;
  for (const auto& [token, id] : vocab.items()) {
    if (!id.is_number_integer() || id.get<long long>() < 0 || id.get<long long>() > INT32_MAX) {
      (at / "vocab").invalid("token \"" + token + "\" has an invalid id");
    }
    const auto value = static_cast<TokenId>(id.get<long long>());
    vocab_.emplace(token, value);
    max_id = std::max(max_id, value);
  }
  // The id -> token table is dense. Real vocabularies number their tokens 0..n-1; one
  // hostile id of 2^31 - 1 would otherwise ask for 2^31 strings (found by fuzz_tokenizer_json).
  if (static_cast<std::int64_t>(max_id) >= static_cast<std::int64_t>(vocab_.size()) + kMaxIdGap) {
    (at / "vocab")
        .unsupported("ids are sparse: the largest is " + std::to_string(max_id) + " for " +
                     std::to_string(vocab_.size()) + " tokens (cachet needs ids below the " +
                     "token count + " + std::to_string(kMaxIdGap) + ")");
  }
  id_to_token_.resize(static_cast<std::size_t>(max_id + 1));
  has_id_.assign(id_to_token_.size(), false);
  for (const auto& [token, id] : vocab_) {
    // Merges are looked up by id pair: two tokens with one id would merge as each other.
    if (has_id_[id]) {
      (at / "vocab")
          .invalid("tokens \"" + id_to_token_[id] + "\" and \"" + token + "\" both have id " +
                   std::to_string(id));
    }
    id_to_token_[id] = token;
    has_id_[id] = true;
  }

  prefix_ = string_or(json, "continuing_subword_prefix", "", at);
  suffix_ = string_or(json, "end_of_word_suffix", "", at);
  byte_fallback_ = bool_or(json, "byte_fallback", false, at);
  fuse_unk_ = bool_or(json, "fuse_unk", false, at);
  ignore_merges_ = bool_or(json, "ignore_merges", false, at);
  if (const Json* unk = optional_field(json, "unk_token")) {
    if (!unk->is_string()) (at / "unk_token").invalid("expected a string");
    const auto it = vocab_.find(unk->get<std::string>());
    if (it == vocab_.end()) {
      (at / "unk_token")
          .invalid("unk_token \"" + unk->get<std::string>() + "\" is not in the vocabulary");
    }
    unk_id_ = it->second;
  }

  const Json& merges = field(json, "merges", at);
  if (!merges.is_array()) (at / "merges").invalid("expected an array");
  merges_.reserve(merges.size());
  std::string left, right, merged;
  for (std::size_t i = 0; i < merges.size(); ++i) {
    const JsonPath where = (at / "merges")[i];
    parse_merge(merges[i], where, left, right);
    const auto l = vocab_.find(left), r = vocab_.find(right);
    // The right part loses its continuing_subword_prefix in the merged token.
    merged = left + right.substr(std::min(prefix_.size(), right.size()));
    const auto m = vocab_.find(merged);
    if (l == vocab_.end() || r == vocab_.end() || m == vocab_.end()) {
      where.invalid("merge \"" + left + " " + right +
                    "\" uses a token that is not in the vocabulary");
    }
    merges_.insert(l->second, r->second, static_cast<std::uint32_t>(i), m->second);
  }

  char_ids_.assign(prefix_.empty() && suffix_.empty() ? 0x10000 : 0, -1);
  if (!char_ids_.empty()) {
    for (const auto& [token, id] : vocab_) {
      std::size_t i = 0;
      if (token.empty() || !is_valid_utf8(token)) continue;
      const char32_t c = next_code_point(token, i);
      if (i == token.size() && c < 0x10000) char_ids_[c] = id;
    }
  }
  for (int b = 0; b < 256; ++b) {
    char name[8];
    std::snprintf(name, sizeof(name), "<0x%02X>", b);
    const auto it = vocab_.find(std::string_view(name));
    byte_fallback_ids_[b] = it == vocab_.end() ? -1 : it->second;
  }
}

Bpe::~Bpe() = default;

std::optional<TokenId> Bpe::token_to_id(std::string_view token) const {
  const auto it = vocab_.find(token);
  if (it == vocab_.end()) return std::nullopt;
  return it->second;
}

const std::string* Bpe::id_to_token(TokenId id) const {
  if (id < 0 || static_cast<std::size_t>(id) >= id_to_token_.size() || !has_id_[id]) {
    return nullptr;
  }
  return &id_to_token_[id];
}

std::optional<TokenId> Bpe::symbol_id(std::string_view ch, bool first, bool last) const {
  if (!char_ids_.empty()) {
    std::size_t i = 0;
    const char32_t c = next_code_point(ch, i);
    if (c < 0x10000) {
      const TokenId id = char_ids_[c];
      if (id < 0) return std::nullopt;
      return id;
    }
    return token_to_id(ch);
  }
  std::string decorated;
  if (!first) decorated += prefix_;
  decorated += ch;
  if (last) decorated += suffix_;
  return token_to_id(decorated);
}

void Bpe::tokenize(std::string_view piece, std::vector<TokenId>& out) const {
  if (piece.empty()) return;
  if (ignore_merges_) {
    if (const auto id = token_to_id(piece)) {
      out.push_back(*id);
      return;
    }
  }
  if (piece.size() > Cache::kMaxWordBytes) {
    merge_word(piece, out);
    return;
  }
  const std::size_t hash = StringHash{}(piece);
  Cache::Shard& shard = cache_->shard_for(hash);
  {
    std::lock_guard lock(shard.mutex);
    const auto it = shard.words.find(piece);
    if (it != shard.words.end()) {
      out.insert(out.end(), it->second.begin(), it->second.end());
      return;
    }
  }
  const std::size_t first = out.size();
  merge_word(piece, out);
  std::vector<TokenId> ids(out.begin() + static_cast<std::ptrdiff_t>(first), out.end());
  std::lock_guard lock(shard.mutex);
  if (shard.words.size() >= Cache::kEntriesPerShard) shard.words.clear();
  shard.words.emplace(std::string(piece), std::move(ids));
}

void Bpe::merge_word(std::string_view word, std::vector<TokenId>& out) const {
  thread_local Scratch scratch;
  std::vector<Symbol>& symbols = scratch.symbols;
  symbols.clear();
  auto add = [&symbols](TokenId id) {
    const auto n = static_cast<std::int32_t>(symbols.size());
    symbols.push_back({id, n - 1, n + 1});
  };

  // Initial symbols: one per character; unknown characters become <0xNN> byte tokens
  // (byte_fallback) or the unk token, consecutive unknowns fused into one with fuse_unk.
  // The unk token waiting to be added (fuse_unk extends it over following unknowns).
  bool unk_pending = false;
  for (std::size_t i = 0; i < word.size();) {
    const std::size_t start = i;
    i += utf8_length(static_cast<unsigned char>(word[i]));
    const std::string_view ch = word.substr(start, i - start);
    const bool first = start == 0, last = i >= word.size();
    if (const auto id = symbol_id(ch, first, last)) {
      if (unk_pending) {
        add(*unk_id_);
        unk_pending = false;
      }
      add(*id);
      continue;
    }
    if (byte_fallback_) {
      std::string decorated;
      if (!first) decorated += prefix_;
      decorated += ch;
      if (last) decorated += suffix_;
      bool all_known = true;
      for (unsigned char b : decorated) all_known = all_known && byte_fallback_ids_[b] >= 0;
      if (all_known) {
        // Like `tokenizers`, a pending unk is not flushed before the byte tokens.
        for (unsigned char b : decorated) add(byte_fallback_ids_[b]);
        continue;
      }
    }
    if (unk_id_) {
      if (unk_pending && !fuse_unk_) add(*unk_id_);
      unk_pending = true;
    }
    // Without an unk token an unknown character is dropped, as `tokenizers` does.
  }
  if (unk_pending) add(*unk_id_);
  if (symbols.empty()) return;
  symbols.back().next = -1;

  std::vector<Candidate>& heap = scratch.heap;
  heap.clear();
  const CandidateAfter after;
  for (std::size_t k = 0; k + 1 < symbols.size(); ++k) {
    if (const auto* m = merges_.find(symbols[k].id, symbols[k + 1].id)) {
      heap.push_back({m->rank, static_cast<std::int32_t>(k), m->merged});
    }
  }
  std::make_heap(heap.begin(), heap.end(), after);
  constexpr TokenId kRemoved = -1;
  while (!heap.empty()) {
    std::pop_heap(heap.begin(), heap.end(), after);
    const Candidate top = heap.back();
    heap.pop_back();
    Symbol& left = symbols[top.pos];
    if (left.id == kRemoved || left.next < 0) continue;
    const Symbol right = symbols[left.next];
    // Skip stale candidates: the pair at `pos` changed since this one was queued.
    const auto* current = merges_.find(left.id, right.id);
    if (current == nullptr || current->merged != top.merged) continue;
    symbols[left.next].id = kRemoved;
    left.id = top.merged;
    left.next = right.next;
    if (right.next >= 0) symbols[right.next].prev = top.pos;
    if (left.prev >= 0) {
      if (const auto* m = merges_.find(symbols[left.prev].id, left.id)) {
        heap.push_back({m->rank, left.prev, m->merged});
        std::push_heap(heap.begin(), heap.end(), after);
      }
    }
    if (left.next >= 0) {
      if (const auto* m = merges_.find(left.id, symbols[left.next].id)) {
        heap.push_back({m->rank, top.pos, m->merged});
        std::push_heap(heap.begin(), heap.end(), after);
      }
    }
  }
  for (std::int32_t k = 0; k >= 0; k = symbols[k].next) out.push_back(symbols[k].id);
}

}  // namespace cachet::tokenizer
