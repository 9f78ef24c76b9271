// On-device sampling and log-probabilities: the CUDA implementation of
// cachet::sampling::sample() and top_logprobs() (src/sampling/sampler.h, the definition).
//
// Which row is used for what: the log-probabilities (token_logprob, top_ids / top_logprobs)
// and the non-finite count always come from a row's RAW logits. The token is drawn from the
// raw row too, unless the row has logits processing (SamplingRow::processed_row >= 0): then it
// is drawn from its processed copy (logits_processing.h), i.e. it is sample() of the host's
// process_logits() output while the log-probabilities are top_logprobs() of the raw logits.
//
// One CTA per row of logits. The result matches the host definition exactly in everything
// structural: the rank order (logit, then id), every tie at a filter boundary, the top_k
// count, the survivors' weights' fixed-point sum (the same 2^-63 grid as the host's
// ExactSum, so totals are bit-identical for identical weights), the random number (the same
// Philox code). What may differ is floating-point rounding: the device's double exp() and the
// host's can differ in the last bit, and the host accumulates top_p's and the draw's
// cumulative probability sequentially in double where the device compares exact fixed-point
// prefix sums. A draw can therefore differ from the host only when u (or top_p) falls within
// rounding (~1e-15 relative) of a boundary between two tokens.
//
// No global scratch: everything lives in shared memory, and the launch is graph-capturable.
#pragma once

#include "kernel_common.h"

namespace cachet::kernels {

// The most top log-probabilities one row can ask for (sampling::kMaxLogprobs).
inline constexpr std::int32_t kMaxSampleLogprobs = 20;

// Per-row parameters (host SamplingParams plus the draw's stream position).
struct SamplingRow {
  float temperature;   // <= 0 or NaN: greedy (argmax, ties to the lowest id)
  std::int32_t top_k;  // <= 0: off
  float top_p;         // >= 1 (or NaN): off
  float min_p;         // <= 0 (or NaN): off
  std::uint64_t seed;
  std::uint64_t counter;  // uniform(seed, counter) drives the draw
  // -1: no log-probabilities at all (token_logprob is written as NaN; greedy rows then take
  // a single pass over the raw logits, and one over the processed row if they have one).
  // 0: only the sampled token's. 1..20: also the top n.
  std::int32_t num_logprobs;
  // -1 (the default): the token is drawn from the raw row. >= 0: from row `processed_row` of
  // SampleParams::processed (the row's logits after min_tokens, logit_bias and penalties).
  std::int32_t processed_row = -1;
};

struct SampleParams {
  const float* logits = nullptr;      // raw fp32 [num_rows, vocab], row r at logits + r * stride
  std::int64_t row_stride = 0;        // elements, >= vocab
  const SamplingRow* rows = nullptr;  // device [num_rows]
  // fp32 processed rows (launch_process_logits' output), row i at processed + i * vocab; the
  // rows with processed_row >= 0 draw their token from it. Null when no row is processed: the
  // launch cannot check the rows (device memory), so the caller guarantees a non-null pointer
  // with at least max(processed_row) + 1 rows whenever some row has processed_row >= 0.
  const float* processed = nullptr;
  std::int32_t* tokens = nullptr;   // [num_rows] the sampled token of each row
  float* token_logprob = nullptr;   // [num_rows] log_softmax(raw logits)[token], or null
  std::int32_t* top_ids = nullptr;  // [num_rows, max_logprobs], or null (max_logprobs 0)
  float* top_logprobs = nullptr;    // [num_rows, max_logprobs], or null (max_logprobs 0)
  // [num_rows] how many raw logits of the row are NaN or +-inf, or null. Sampling treats NaN as
  // -inf; a caller that must not sample from a broken row (debug_poison_kv) checks this.
  std::int32_t* nonfinite = nullptr;
  std::int32_t num_rows = 0;
  std::int32_t vocab = 0;
  // Width of the top_ids / top_logprobs rows, <= kMaxSampleLogprobs. A row's first
  // min(num_logprobs, vocab, max_logprobs) entries are written (descending log-probability,
  // ties lower id first); the rest of its entries are set to id -1 and logprob NaN.
  std::int32_t max_logprobs = 0;
};

// Launches one CTA per row. Returns cudaErrorInvalidValue (launching nothing) for vocab <= 0,
// row_stride < vocab, max_logprobs outside [0, kMaxSampleLogprobs], or a missing pointer.
cudaError_t launch_sample(const SampleParams& p, cudaStream_t stream);

}  // namespace cachet::kernels
