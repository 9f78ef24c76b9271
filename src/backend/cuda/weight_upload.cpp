#include "backend/cuda/weight_upload.h"

#include <fmt/format.h>

#include <algorithm>
#include <cstring>
#include <memory>
#include <type_traits>

#include "cachet/errors.h"

namespace cachet::backend::cuda {

WeightUpload::WeightUpload(bool fp16, std::size_t staging_bytes)
    : fp16_(fp16), staging_elems_(std::max<std::size_t>(1, staging_bytes / 2)) {}

void WeightUpload::add(std::vector<const model::HostTensor*> parts, const void** slot) {
  std::size_t elems = 0;
  for (const model::HostTensor* p : parts) elems += static_cast<std::size_t>(p->numel());
  pieces_.push_back({std::move(parts), total_, slot});
  total_ += align_up(elems * 2);
}

void WeightUpload::stage(const model::HostTensor& t, std::int64_t first, std::int64_t count,
                         std::uint16_t* dst) {
  const model::DType device = fp16_ ? model::DType::kF16 : model::DType::kBF16;
  if (t.dtype == device) {  // the stored bytes are the device's: copied, not converted
    std::memcpy(dst, t.at(first), static_cast<std::size_t>(count) * 2);
    return;
  }
  widened_.resize(static_cast<std::size_t>(count));
  t.to_f32(first, count, widened_.data());
  for (std::size_t i = 0; i < widened_.size(); ++i) {  // round to nearest even
    dst[i] = fp16_ ? model::f32_to_f16(widened_[i]) : model::f32_to_bf16(widened_[i]);
  }
}

DeviceBuffer WeightUpload::upload(cudaStream_t stream) {
  DeviceBuffer device(total_, fmt::format("the weights ({} tensors)", pieces_.size()));
  const std::size_t largest = [&] {
    std::size_t n = 1;
    for (const Piece& p : pieces_)
      for (const model::HostTensor* t : p.parts)
        n = std::max(n, static_cast<std::size_t>(t->numel()));
    return std::min(n, staging_elems_);
  }();
  // Two buffers: filling one overlaps the copy out of the other; each buffer's event says
  // when the copy that last read it is done.
  PinnedBuffer staging[2] = {PinnedBuffer(largest * 2, "weight staging"),
                             PinnedBuffer(largest * 2, "weight staging")};
  std::unique_ptr<std::remove_pointer_t<cudaEvent_t>, EventDeleter> copied[2];
  for (auto& event : copied) {
    cudaEvent_t e = nullptr;
    check(cudaEventCreateWithFlags(&e, cudaEventDisableTiming), "cudaEventCreate (weight upload)");
    event.reset(e);
  }
  bool in_use[2] = {false, false};
  int next = 0;
  for (const Piece& piece : pieces_) {
    auto* dst = static_cast<char*>(device.get()) + piece.offset;
    *piece.slot = dst;
    for (const model::HostTensor* t : piece.parts) {
      for (std::int64_t first = 0; first < t->numel();) {
        const std::int64_t count =
            std::min<std::int64_t>(t->numel() - first, static_cast<std::int64_t>(largest));
        if (in_use[next]) {
          check(cudaEventSynchronize(copied[next].get()), "cudaEventSynchronize (weight upload)");
        }
        stage(*t, first, count, staging[next].as<std::uint16_t>());
        check(cudaMemcpyAsync(dst, staging[next].get(), static_cast<std::size_t>(count) * 2,
                              cudaMemcpyHostToDevice, stream),
              "copy weights to the GPU");
        check(cudaEventRecord(copied[next].get(), stream), "cudaEventRecord (weight upload)");
        in_use[next] = true;
        next ^= 1;
        dst += count * 2;
        first += count;
      }
    }
  }
  check(cudaStreamSynchronize(stream), "cudaStreamSynchronize (weight upload)");
  return device;
}

}  // namespace cachet::backend::cuda
