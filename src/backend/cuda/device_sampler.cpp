#include "backend/cuda/device_sampler.h"

#include <fmt/format.h>

#include <algorithm>
#include <cstring>

namespace cachet::backend::cuda {

DeviceSampler::DeviceSampler(std::int32_t max_rows, std::int64_t vocab)
    : max_rows_(max_rows), vocab_(vocab) {
  const auto R = static_cast<std::size_t>(max_rows);
  const std::size_t K = kernels::kMaxSampleLogprobs;
  const std::size_t rows_bytes = align_up(R * sizeof(kernels::SamplingRow));
  const std::size_t tok = align_up(R * 4), lp = align_up(R * 4), ids = align_up(R * K * 4);
  const std::size_t top_lp = align_up(R * K * 4), bad = align_up(R * 4);
  const std::size_t total = rows_bytes + tok + lp + ids + top_lp + bad;
  dev_ = DeviceBuffer(total, "the sampling buffers");
  host_ = PinnedBuffer(total, "the sampling mirror");
  const auto carve = [&](char* b) {
    return Io{reinterpret_cast<kernels::SamplingRow*>(b),
              reinterpret_cast<std::int32_t*>(b + rows_bytes),
              reinterpret_cast<float*>(b + rows_bytes + tok),
              reinterpret_cast<std::int32_t*>(b + rows_bytes + tok + lp),
              reinterpret_cast<float*>(b + rows_bytes + tok + lp + ids),
              reinterpret_cast<std::int32_t*>(b + rows_bytes + tok + lp + ids + top_lp)};
  };
  io_ = carve(dev_.as<char>());
  mirror_ = carve(host_.as<char>());
  out_offset_ = rows_bytes;
  processed_rows_.reserve(R);
}

void DeviceSampler::reserve_processing(std::size_t rows, std::size_t edits) {
  if (rows > processed_rows_cap_) {
    // Grown to what this chunk needs, at least double: a few growths in all.
    processed_rows_cap_ = std::max(rows, 2 * processed_rows_cap_);
    processed_ = DeviceBuffer(processed_rows_cap_ * static_cast<std::size_t>(vocab_) * 4,
                              "the processed logits rows");
  }
  if (edits > edits_cap_) {
    edits_cap_ = std::max({edits, 2 * edits_cap_, std::size_t{1024}});
    const std::size_t bytes =
        align_up(static_cast<std::size_t>(max_rows_) * sizeof(kernels::ProcessedRow)) +
        edits_cap_ * sizeof(sampling::LogitEdit);
    edits_dev_ = DeviceBuffer(bytes, "the logits edits");
    edits_host_ = PinnedBuffer(bytes, "the logits edits mirror");
  }
}

const float* DeviceSampler::process(const float* logits, std::span<const SampleSpec> specs,
                                    cudaStream_t stream) {
  processed_rows_.clear();
  std::size_t num_edits = 0;
  for (std::size_t r = 0; r < specs.size(); ++r) {
    if (specs[r].edits.empty()) continue;  // processed_row stays -1
    mirror_.rows[r].processed_row = static_cast<std::int32_t>(processed_rows_.size());
    processed_rows_.push_back({static_cast<std::int32_t>(r), static_cast<std::int32_t>(num_edits),
                               static_cast<std::int32_t>(specs[r].edits.size())});
    num_edits += specs[r].edits.size();
  }
  if (processed_rows_.empty()) return nullptr;
  reserve_processing(processed_rows_.size(), num_edits);
  const std::size_t rows_bytes =
      align_up(static_cast<std::size_t>(max_rows_) * sizeof(kernels::ProcessedRow));
  char* host = edits_host_.as<char>();
  std::memcpy(host, processed_rows_.data(), processed_rows_.size() * sizeof(kernels::ProcessedRow));
  auto* edits = reinterpret_cast<sampling::LogitEdit*>(host + rows_bytes);
  for (const SampleSpec& spec : specs)
    edits = std::copy(spec.edits.begin(), spec.edits.end(), edits);
  // One copy: the row table's padding goes along, the unused capacity does not.
  const std::size_t used = rows_bytes + num_edits * sizeof(sampling::LogitEdit);
  check(cudaMemcpyAsync(edits_dev_.get(), host, used, cudaMemcpyHostToDevice, stream),
        "copy logits edits to the GPU");
  kernels::ProcessLogitsParams pp;
  pp.logits = logits;
  pp.row_stride = vocab_;
  pp.processed = processed_.as<float>();
  pp.rows = edits_dev_.as<kernels::ProcessedRow>();
  pp.edits = reinterpret_cast<const sampling::LogitEdit*>(edits_dev_.as<char>() + rows_bytes);
  pp.num_processed = static_cast<std::int32_t>(processed_rows_.size());
  pp.vocab = static_cast<std::int32_t>(vocab_);
  check(kernels::launch_process_logits(pp, stream), "logits processing kernel");
  return processed_.as<float>();
}

void DeviceSampler::sample(const float* logits, std::span<const SampleSpec> specs,
                           std::span<SampledToken> out, cudaStream_t stream) {
  const auto rows = static_cast<std::int32_t>(specs.size());
  if (rows > max_rows_ || out.size() != specs.size()) {
    throw Error(ErrorCode::kInternal,
                fmt::format("cuda backend: {} rows to sample, at most {} ({} outputs)", rows,
                            max_rows_, out.size()));
  }
  if (rows == 0) return;
  for (std::int32_t r = 0; r < rows; ++r) {
    const SampleSpec& spec = specs[static_cast<std::size_t>(r)];
    mirror_.rows[r] = {spec.temperature, spec.top_k,   spec.top_p,        spec.min_p,
                       spec.seed,        spec.counter, spec.num_logprobs, -1};
  }
  const float* processed = process(logits, specs, stream);
  check(cudaMemcpyAsync(io_.rows, mirror_.rows, rows * sizeof(kernels::SamplingRow),
                        cudaMemcpyHostToDevice, stream),
        "copy sampling parameters to the GPU");
  kernels::SampleParams sp;
  sp.logits = logits;
  sp.row_stride = vocab_;
  sp.processed = processed;
  sp.rows = io_.rows;
  sp.tokens = io_.tokens;
  sp.token_logprob = io_.token_logprob;
  // Rows are kMaxSampleLogprobs wide; each row's num_logprobs decides the work.
  sp.top_ids = io_.top_ids;
  sp.top_logprobs = io_.top_logprobs;
  sp.nonfinite = io_.nonfinite;
  sp.num_rows = rows;
  sp.vocab = static_cast<std::int32_t>(vocab_);
  sp.max_logprobs = kernels::kMaxSampleLogprobs;
  check(kernels::launch_sample(sp, stream), "sampling kernel");
  // Outputs are contiguous after the parameters: one copy brings back what is used.
  check(cudaMemcpyAsync(host_.as<char>() + out_offset_, dev_.as<char>() + out_offset_,
                        dev_.bytes() - out_offset_, cudaMemcpyDeviceToHost, stream),
        "copy sampled tokens to the host");
  check(cudaStreamSynchronize(stream), "cudaStreamSynchronize (sampling)");
  read_back(specs, out);
}

void DeviceSampler::read_back(std::span<const SampleSpec> specs,
                              std::span<SampledToken> out) const {
  const std::size_t K = kernels::kMaxSampleLogprobs;
  for (std::size_t r = 0; r < specs.size(); ++r) {
    SampledToken& t = out[r];
    t.token = mirror_.tokens[r];
    t.logprob = mirror_.token_logprob[r];
    t.num_nonfinite = mirror_.nonfinite[r];
    t.top_ids.clear();
    t.top_logprobs.clear();
    for (std::int32_t i = 0; i < specs[r].num_logprobs; ++i) {
      const std::int32_t id = mirror_.top_ids[r * K + static_cast<std::size_t>(i)];
      if (id < 0) break;
      t.top_ids.push_back(id);
      t.top_logprobs.push_back(mirror_.top_logprobs[r * K + static_cast<std::size_t>(i)]);
    }
  }
}

}  // namespace cachet::backend::cuda
