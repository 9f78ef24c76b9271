// Sampling next to the logits on the GPU: the host side of kernels/sampling.h and
// kernels/logits_processing.h. Per chunk of logits rows it uploads each row's sampling
// parameters, applies the rows' logits edits (min_tokens, logit_bias, penalties: the
// definition in sampling/logit_edit.h) to copies of those rows, samples every row (from the
// copy where there is one; log-probabilities always from the raw row) and brings back the
// tokens and log-probabilities.
#pragma once

#include <cuda_runtime_api.h>

#include <cstddef>
#include <cstdint>
#include <span>
#include <vector>

#include "backend/backend.h"
#include "backend/cuda/cuda_util.h"
#include "logits_processing.h"
#include "sampling.h"
#include "sampling/logit_edit.h"

namespace cachet::backend::cuda {

class DeviceSampler {
 public:
  DeviceSampler() = default;
  // Buffers for up to `max_rows` rows per call. Throws kOutOfMemory.
  DeviceSampler(std::int32_t max_rows, std::int64_t vocab);

  // The fixed buffers' size (the edits' buffers grow with use, on the first rows that need
  // them: by the rows' vocab-sized copies and their edits).
  std::size_t fixed_bytes() const { return dev_.bytes(); }

  // Samples specs.size() (<= max_rows) rows of `logits` (device fp32, row stride vocab) into
  // `out`; returns once the results are on the host (synchronizes `stream`).
  void sample(const float* logits, std::span<const SampleSpec> specs, std::span<SampledToken> out,
              cudaStream_t stream);

 private:
  struct Io {
    kernels::SamplingRow* rows;
    std::int32_t* tokens;
    float* token_logprob;
    std::int32_t* top_ids;    // [rows, kMaxSampleLogprobs]
    float* top_logprobs;      // [rows, kMaxSampleLogprobs]
    std::int32_t* nonfinite;  // [rows] NaN / +-inf logits per row
  };
  // Applies the edits of the rows that have some to copies of them; sets their processed_row
  // in the host mirror (the others keep -1). Returns the copies' device buffer (null when none).
  const float* process(const float* logits, std::span<const SampleSpec> specs, cudaStream_t stream);
  void reserve_processing(std::size_t rows, std::size_t edits);
  void read_back(std::span<const SampleSpec> specs, std::span<SampledToken> out) const;

  std::int32_t max_rows_ = 0;
  std::int64_t vocab_ = 0;
  DeviceBuffer dev_;
  PinnedBuffer host_;
  Io io_{}, mirror_{};
  std::size_t out_offset_ = 0;  // the outputs follow the parameters in both buffers

  // Logits processing, grown on demand.
  DeviceBuffer processed_;  // [processed_rows_cap_, vocab] fp32
  std::size_t processed_rows_cap_ = 0;
  DeviceBuffer edits_dev_;  // kernels::ProcessedRow[max_rows] then LogitEdit[edits_cap_]
  PinnedBuffer edits_host_;
  std::size_t edits_cap_ = 0;
  std::vector<kernels::ProcessedRow> processed_rows_;
};

}  // namespace cachet::backend::cuda
