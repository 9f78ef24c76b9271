#include "sampling/sampler.h"

#include <fmt/format.h>

#include <algorithm>
#include <array>
#include <cmath>
#include <limits>
#include <numbers>

#include "cachet/errors.h"
#include "sampling/rng.h"

namespace cachet::sampling {
namespace {

constexpr float kNegInf = -std::numeric_limits<float>::infinity();

// NaN logits behave as -inf everywhere, so a broken row can never win a comparison or poison
// a sum.
inline float clean(float x) { return std::isnan(x) ? kNegInf : x; }

// A token and its cleaned logit. Sorting these contiguous pairs (rather than ids that point
// into the logits) keeps the selection passes over a 152k vocabulary cache friendly.
struct Entry {
  float x;
  TokenId id;
  double w = 0.0;  // exp((x - max) / temperature), once computed
};

// The rank order every function here uses: higher (cleaned) logit first, ties lower id
// first. It is the probability order at any temperature, but exact, and a strict total
// order, so the selections (nth_element, a bounded heap) keep exactly the tokens that a
// stable full sort would.
inline bool rank_before(float xa, TokenId a, float xb, TokenId b) {
  return xa > xb || (xa == xb && a < b);
}
struct EntryRank {
  bool operator()(const Entry& a, const Entry& b) const {
    return rank_before(a.x, a.id, b.x, b.id);
  }
};

// The first index of the largest cleaned logit (0 when every logit is -inf or NaN).
TokenId argmax(std::span<const float> logits) {
  TokenId best = 0;
  float best_x = clean(logits[0]);
  for (std::size_t i = 1; i < logits.size(); ++i) {
    const float x = clean(logits[i]);
    if (x > best_x) {
      best_x = x;
      best = static_cast<TokenId>(i);
    }
  }
  return best;
}

void require_logits(std::span<const float> logits, const char* what) {
  if (logits.empty()) {
    throw Error(ErrorCode::kInvalidArgument, fmt::format("sampling::{}: empty logits", what));
  }
  if (logits.size() > static_cast<std::size_t>(std::numeric_limits<TokenId>::max())) {
    throw Error(
        ErrorCode::kInvalidArgument,
        fmt::format("sampling::{}: {} logits exceed the token id range", what, logits.size()));
  }
}

// An order-independent sum of weights in [0, 1]: each is rounded to a multiple of 2^-63 and
// added exactly in 128-bit fixed point. The normalizer (hence every probability) is then the
// same however far the survivors got sorted, so candidates() and sample() agree to the last
// bit, and a parallel reduction can reproduce it exactly. The rounding costs at most
// vocab * 2^-64 absolute on a total that is >= 1 (the top token's weight is exactly 1).
class ExactSum {
 public:
  void add(double w) {
    const auto v = static_cast<std::uint64_t>(w * 0x1.0p63 + 0.5);  // exact scaling
    lo_ += v;
    hi_ += lo_ < v;  // carry
  }
  double value() const {
    return static_cast<double>(hi_) * 2.0 + static_cast<double>(lo_) * 0x1.0p-63;
  }

 private:
  std::uint64_t lo_ = 0;
  std::uint64_t hi_ = 0;
};

// The `count` highest ranked tokens, ranked (fewer when the row has fewer). -inf (and NaN)
// logits are skipped unless `keep_neg_inf`. A bounded heap whose top is the worst token kept:
// on a row in no particular order almost every token costs one well-predicted comparison,
// O(n log count) at worst, and nothing vocabulary-sized is allocated.
std::vector<Entry> select_top(std::span<const float> logits, std::size_t count, bool keep_neg_inf) {
  std::vector<Entry> heap;
  if (count == 0) return heap;
  heap.reserve(count);
  for (std::size_t i = 0; i < logits.size(); ++i) {
    const float x = clean(logits[i]);
    if (x == kNegInf && !keep_neg_inf) continue;
    const auto id = static_cast<TokenId>(i);
    if (heap.size() < count) {
      heap.push_back({x, id});
      std::push_heap(heap.begin(), heap.end(), EntryRank{});
    } else if (rank_before(x, id, heap.front().x, heap.front().id)) {
      std::pop_heap(heap.begin(), heap.end(), EntryRank{});
      heap.back() = {x, id};
      std::push_heap(heap.begin(), heap.end(), EntryRank{});
    }
  }
  std::sort_heap(heap.begin(), heap.end(), EntryRank{});
  return heap;
}

// The distribution after temperature and the filters. Survivors live in `entries_`; the
// first `ranked_` of them are in rank order and rank before all the others, which lets top_p
// and sample() sort only as deep as they actually look.
class Filtered {
 public:
  Filtered(std::span<const float> logits, const SamplingParams& params) {
    const std::size_t n = logits.size();
    const std::int32_t k = params.top_k;
    if (k > 0 && static_cast<std::size_t>(k) <= n / 4) {
      // A small top_k: select straight from the logits, never materializing the vocabulary.
      entries_ = select_top(logits, static_cast<std::size_t>(k), /*keep_neg_inf=*/false);
      ranked_ = entries_.size();
    } else {
      entries_.reserve(n);
      for (std::size_t i = 0; i < n; ++i) {
        const float x = clean(logits[i]);
        if (x != kNegInf) entries_.push_back({x, static_cast<TokenId>(i)});
      }
      apply_top_k(k);
    }
    if (entries_.empty()) {
      // Nothing has any probability: fall back to the argmax of the raw logits (token 0),
      // rather than fail the request or divide by zero.
      entries_.push_back({kNegInf, argmax(logits), 1.0});
      ranked_ = 1;
      mass_ = 1.0;
      return;
    }
    weigh(params.temperature);
    apply_top_p(params.top_p);
    apply_min_p(params.min_p);
  }

  // Every survivor, ranked, with its renormalized probability.
  Candidates all() {
    std::sort(entries_.begin() + static_cast<std::ptrdiff_t>(ranked_), entries_.end(), EntryRank{});
    ranked_ = entries_.size();
    Candidates out;
    out.ids.reserve(entries_.size());
    out.probs.reserve(entries_.size());
    for (const Entry& e : entries_) {
      out.ids.push_back(e.id);
      out.probs.push_back(static_cast<float>(e.w / mass_));
    }
    return out;
  }

  // The inverse CDF at u: the first survivor in rank order whose cumulative probability
  // (summed in double) exceeds u, or the last one when rounding leaves u beyond the total.
  TokenId draw(double u) {
    rank_by_mass(u * mass_);
    double cum = 0.0;
    for (std::size_t j = 0; j < entries_.size(); ++j) {
      ensure_ranked(j + 1);
      cum += entries_[j].w / mass_;
      if (u < cum) return entries_[j].id;
    }
    return entries_.back().id;  // fully ranked by now
  }

 private:
  static constexpr std::size_t kMinChunk = 64;
  // Weight histogram resolution: 8 buckets per halving of the weight, down to 2^-64; the
  // last bucket takes everything smaller.
  static constexpr int kBucketsPerOctave = 8;
  static constexpr int kBuckets = 64 * kBucketsPerOctave + 1;

  void apply_top_k(std::int32_t k) {
    if (k <= 0 || static_cast<std::size_t>(k) >= entries_.size()) return;
    // Linear-time selection; the k survivors are sorted later only as far as needed, and
    // only they need a weight (an exp) at all.
    std::nth_element(entries_.begin(), entries_.begin() + (k - 1), entries_.end(), EntryRank{});
    entries_.resize(static_cast<std::size_t>(k));
  }

  // w = exp((x - max) / temperature) in double: exactly 1 for the top token(s), and finite
  // for any temperature > 0 thanks to the max subtraction. Tokens whose weight underflows to
  // 0 can never be drawn and are dropped; they rank below every other survivor, so dropping
  // them after top_k rather than before changes nothing.
  void weigh(float temperature) {
    max_ = kNegInf;
    for (const Entry& e : entries_) max_ = std::max(max_, e.x);
    temperature_ = temperature;
    ExactSum mass;
    remove_entries([&](Entry& e) {
      const double d = scaled(e.x);
      e.w = d == -std::numeric_limits<double>::infinity() ? 0.0 : std::exp(d);
      if (e.w > 0.0) mass.add(e.w);
      return !(e.w > 0.0);
    });
    mass_ = mass.value();
  }

  // (x - max) / temperature, <= 0, and exactly 0 for the top logit (also when it is +inf,
  // where x - max would be NaN). It is -inf for finite logits when max is +inf: +inf logits
  // share all the mass, the limit of the softmax. Monotone in x.
  double scaled(float x) const {
    if (x == max_) return 0.0;
    return (static_cast<double>(x) - static_cast<double>(max_)) / temperature_;
  }

  // Keeps the smallest rank-order prefix whose cumulative probability (renormalized over the
  // top_k survivors) reaches top_p, and at least one token: token j stays iff the mass
  // before it is < top_p. This is HF's TopPLogitsWarper (which drops the tokens whose
  // ascending cumulative mass is <= 1 - top_p) without its 1 - top_p rounding.
  void apply_top_p(float top_p) {
    if (!(top_p < 1.0f) || entries_.size() <= 1) return;  // 1 (or an invalid NaN) keeps all
    const double target = top_p;
    rank_by_mass(target * mass_);
    double cum = 0.0;
    ExactSum kept_mass;
    std::size_t kept = 0;
    while (kept < entries_.size() && (kept == 0 || cum < target)) {
      ensure_ranked(kept + 1);
      cum += entries_[kept].w / mass_;
      kept_mass.add(entries_[kept].w);
      ++kept;
    }
    entries_.resize(kept);
    ranked_ = std::min(ranked_, kept);
    mass_ = kept_mass.value();
  }

  // Keeps tokens with p >= min_p * p_max. The ratio p / p_max does not change under
  // renormalization and the top token's weight is exactly 1, so the test is simply
  // w >= min_p: the same on the distribution after top_p (HF's order) as anywhere.
  void apply_min_p(float min_p) {
    if (!(min_p > 0.0f)) return;
    const double min_weight = std::min(static_cast<double>(min_p), 1.0);  // top token stays
    ExactSum kept_mass;
    remove_entries([&](const Entry& e) {
      if (e.w < min_weight) return true;
      kept_mass.add(e.w);
      return false;
    });
    mass_ = kept_mass.value();
  }

  // Removes the entries `drop` selects, keeping the order of the rest, so the ranked prefix
  // stays ranked (and shrinks by what it lost).
  template <typename Drop>
  void remove_entries(Drop drop) {
    std::size_t kept = 0;
    std::size_t ranked_kept = 0;
    for (std::size_t j = 0; j < entries_.size(); ++j) {
      if (drop(entries_[j])) continue;
      ranked_kept += j < ranked_;
      entries_[kept++] = entries_[j];
    }
    entries_.resize(kept);
    ranked_ = ranked_kept;
  }

  // The histogram bucket of a logit: 0 for the top, then kBucketsPerOctave buckets per
  // halving of its weight. A monotone function of x, so every set {bucket <= b} holds whole
  // runs of the rank order.
  int bucket(float x, double per_logit) const {
    if (x == max_) return 0;
    const double b = (static_cast<double>(max_) - static_cast<double>(x)) * per_logit;
    return b < kBuckets - 1 ? static_cast<int>(b) : kBuckets - 1;
  }

  // Before a walk in rank order that will need a total weight of about `weight`: one pass
  // builds a histogram of the weight per bucket, a second moves the buckets that reach that
  // weight to the front, and only those get sorted. Far cheaper than sorting everything when
  // the mass sits in a few thousand tokens of a large vocabulary; ensure_ranked() still
  // covers a walk that goes further (rounding).
  void rank_by_mass(double weight) {
    if (ranked_ > 0 || entries_.size() <= kMinChunk) return;
    // w = 2^-((max - x) / (T ln 2)): buckets per unit of logit below the max.
    const double per_logit = kBucketsPerOctave / (std::numbers::ln2 * temperature_);
    std::array<double, kBuckets> hist{};
    for (const Entry& e : entries_) hist[bucket(e.x, per_logit)] += e.w;
    const double goal = weight * (1.0 + 1e-9);  // slack for the rounding of either sum
    int last = 0;
    for (double acc = hist[0]; !(acc > goal) && last < kBuckets - 1;) acc += hist[++last];
    const auto middle = std::partition(entries_.begin(), entries_.end(), [&](const Entry& e) {
      return bucket(e.x, per_logit) <= last;
    });
    std::sort(entries_.begin(), middle, EntryRank{});
    ranked_ = static_cast<std::size_t>(middle - entries_.begin());
  }

  // Makes entries_[0, count) ranked, selecting and sorting a geometrically growing chunk
  // beyond what is already ranked, so that walking the survivors in order costs O(n) per
  // doubling instead of a full sort up front.
  void ensure_ranked(std::size_t count) {
    if (count <= ranked_) return;
    const std::size_t end = std::min(entries_.size(), std::max({count, 2 * ranked_, kMinChunk}));
    const auto first = entries_.begin() + static_cast<std::ptrdiff_t>(ranked_);
    const auto middle = entries_.begin() + static_cast<std::ptrdiff_t>(end);
    if (end < entries_.size()) std::nth_element(first, middle, entries_.end(), EntryRank{});
    std::sort(first, middle, EntryRank{});
    ranked_ = end;
  }

  std::vector<Entry> entries_;  // survivors
  std::size_t ranked_ = 0;
  double mass_ = 1.0;  // the survivors' total weight
  float max_ = kNegInf;
  double temperature_ = 1.0;
};

}  // namespace

double uniform(std::uint64_t seed, std::uint64_t counter) { return philox_uniform(seed, counter); }

Candidates candidates(std::span<const float> logits, const SamplingParams& params) {
  require_logits(logits, "candidates");
  if (!(params.temperature > 0.0f)) return {{argmax(logits)}, {1.0f}};
  return Filtered(logits, params).all();
}

TokenId sample(std::span<const float> logits, const SamplingParams& params, std::uint64_t seed,
               std::uint64_t counter) {
  require_logits(logits, "sample");
  if (!(params.temperature > 0.0f)) return argmax(logits);
  return Filtered(logits, params).draw(uniform(seed, counter));
}

std::vector<TokenLogprob> top_logprobs(std::span<const float> logits, std::int32_t k,
                                       std::optional<TokenId> include) {
  require_logits(logits, "top_logprobs");
  const std::size_t n = logits.size();
  if (include && (*include < 0 || static_cast<std::size_t>(*include) >= n)) {
    throw Error(ErrorCode::kInvalidArgument,
                fmt::format("sampling::top_logprobs: token id {} is outside the vocabulary [0, {})",
                            *include, n));
  }
  const TokenId top = argmax(logits);
  const float max = clean(logits[top]);
  // log_softmax(x)_i = x_i - logsumexp(x), with logsumexp = max + log(sum exp(x - max))
  // summed in double in id order. The degenerate rows follow candidates(): all -inf/NaN is a
  // point mass on token 0 (log-prob 0, others -inf), and +inf logits split the mass evenly.
  double lse = 0.0;
  std::size_t num_pos_inf = 0;
  if (max == std::numeric_limits<float>::infinity()) {
    for (float x : logits) num_pos_inf += x == max;
  } else if (max != kNegInf) {
    double sum = 0.0;
    for (float x : logits) {
      const float c = clean(x);
      if (c != kNegInf) sum += std::exp(static_cast<double>(c) - static_cast<double>(max));
    }
    lse = static_cast<double>(max) + std::log(sum);
  }
  const auto logprob = [&](TokenId i) -> float {
    const float x = clean(logits[i]);
    if (max == kNegInf) return i == top ? 0.0f : kNegInf;
    if (num_pos_inf > 0) {
      return x == max ? static_cast<float>(-std::log(static_cast<double>(num_pos_inf))) : kNegInf;
    }
    if (x == kNegInf) return kNegInf;
    return static_cast<float>(static_cast<double>(x) - lse);
  };

  const std::size_t count = std::clamp<std::int64_t>(k, 0, static_cast<std::int64_t>(n));
  std::vector<TokenLogprob> out;
  out.reserve(count + 1);
  for (const Entry& e : select_top(logits, count, /*keep_neg_inf=*/true)) {
    out.push_back({e.id, logprob(e.id)});
  }
  if (include && std::none_of(out.begin(), out.end(),
                              [&](const TokenLogprob& t) { return t.id == *include; })) {
    out.push_back({*include, logprob(*include)});
  }
  return out;
}

namespace {

// The fields of logits_processors.h; NaN fails every comparison and is rejected.
std::string validate_processors(const SamplingParams& params, std::int32_t vocab_size) {
  if (params.min_tokens < 0 || params.min_tokens > params.max_tokens) {
    return fmt::format("min_tokens must be in [0, max_tokens = {}], got {}", params.max_tokens,
                       params.min_tokens);
  }
  for (const auto& [id, bias] : params.logit_bias) {
    if (id < 0 || id >= vocab_size) {
      return fmt::format("logit_bias: token id {} is not in [0, {}) (the vocabulary)", id,
                         vocab_size);
    }
    if (!(bias >= -100.0f && bias <= 100.0f)) {
      return fmt::format("logit_bias[{}] must be in [-100, 100], got {}", id, bias);
    }
  }
  if (!(params.repetition_penalty > 0.0f) || std::isinf(params.repetition_penalty)) {
    return fmt::format("repetition_penalty must be finite and > 0 (1 is off), got {}",
                       params.repetition_penalty);
  }
  if (!(params.presence_penalty >= -2.0f && params.presence_penalty <= 2.0f)) {
    return fmt::format("presence_penalty must be in [-2, 2], got {}", params.presence_penalty);
  }
  if (!(params.frequency_penalty >= -2.0f && params.frequency_penalty <= 2.0f)) {
    return fmt::format("frequency_penalty must be in [-2, 2], got {}", params.frequency_penalty);
  }
  return "";
}

}  // namespace

std::string validate(const SamplingParams& params, std::int32_t vocab_size) {
  if (!std::isfinite(params.temperature) || params.temperature < 0.0f) {
    return fmt::format("temperature must be finite and >= 0, got {}", params.temperature);
  }
  if (params.top_k < 0) {
    return fmt::format("top_k must be >= 0 (0 disables it), got {}", params.top_k);
  }
  // Written so that NaN fails every comparison and is rejected.
  if (!(params.top_p > 0.0f && params.top_p <= 1.0f)) {
    return fmt::format("top_p must be in (0, 1], got {}", params.top_p);
  }
  if (!(params.min_p >= 0.0f && params.min_p <= 1.0f)) {
    return fmt::format("min_p must be in [0, 1], got {}", params.min_p);
  }
  if (params.max_tokens < 1) {
    return fmt::format("max_tokens must be >= 1, got {}", params.max_tokens);
  }
  if (params.n < 1 || params.n > kMaxSamples) {
    return fmt::format("n must be in [1, {}], got {}", kMaxSamples, params.n);
  }
  for (std::size_t i = 0; i < params.stop_token_ids.size(); ++i) {
    const TokenId id = params.stop_token_ids[i];
    if (id < 0 || id >= vocab_size) {
      return fmt::format("stop_token_ids[{}] must be in [0, {}) (the vocabulary), got {}", i,
                         vocab_size, id);
    }
  }
  if (std::string msg = validate_processors(params, vocab_size); !msg.empty()) return msg;
  if (params.logprobs && (*params.logprobs < 0 || *params.logprobs > kMaxLogprobs)) {
    return fmt::format("logprobs must be in [0, {}], got {}", kMaxLogprobs, *params.logprobs);
  }
  if (params.prompt_logprobs &&
      (*params.prompt_logprobs < 0 || *params.prompt_logprobs > kMaxLogprobs)) {
    return fmt::format("prompt_logprobs must be in [0, {}], got {}", kMaxLogprobs,
                       *params.prompt_logprobs);
  }
  return "";
}

}  // namespace cachet::sampling
