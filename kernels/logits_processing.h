// On-device logits processing: the CUDA half of cachet::sampling::process_logits()
// (src/sampling/logits_processors.h). The host turns each request's min_tokens, logit_bias and
// repetition / presence / frequency penalties into a list of edits (sampling::logit_edits);
// this kernel copies the request's raw logits row and applies the edits to the copy, with the
// same fp32 arithmetic as the host (sampling/logit_edit.h), so the processed rows are
// bit-identical to the host's (up to NaN payloads). The sampler (sampling.h) then draws from
// the processed copy while the log-probabilities still come from the raw row.
//
// One CTA per processed row; no global scratch, graph-capturable.
#pragma once

#include "kernel_common.h"
#include "sampling/logit_edit.h"

namespace cachet::kernels {

// One processed row: which raw row it copies, and which edits it gets.
struct ProcessedRow {
  std::int32_t logits_row;   // the raw row, in [0, the number of rows of `logits`)
  std::int32_t edits_begin;  // its edits are edits[edits_begin, edits_begin + edits_count)
  std::int32_t edits_count;
};

struct ProcessLogitsParams {
  const float* logits = nullptr;  // fp32 raw rows, row r at logits + r * row_stride
  std::int64_t row_stride = 0;    // elements, >= vocab
  float* processed = nullptr;     // fp32 [num_processed, vocab], row i at processed + i * vocab
  const ProcessedRow* rows = nullptr;  // device [num_processed]
  // Device. Within one row the ids are unique (sampling::logit_edits makes them so): the
  // edits of a row are applied in parallel. Ids outside [0, vocab) are skipped. Non-null
  // even when no row has edits.
  const sampling::LogitEdit* edits = nullptr;
  std::int32_t num_processed = 0;
  std::int32_t vocab = 0;
};

// Launches one CTA per processed row: processed row i = raw row rows[i].logits_row with the
// row's edits applied (sampling::apply_logit_edit). The caller guarantees that every
// logits_row and edit range is in bounds. Returns cudaErrorInvalidValue (launching nothing)
// for num_processed < 0, vocab <= 0, row_stride < vocab or a missing pointer; with
// num_processed 0 it launches nothing.
cudaError_t launch_process_logits(const ProcessLogitsParams& p, cudaStream_t stream);

}  // namespace cachet::kernels
