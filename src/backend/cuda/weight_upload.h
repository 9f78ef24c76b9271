// The CUDA backend's weight upload: host tensors in their stored dtype (views of the
// memory-mapped safetensors files) into one device allocation in the compute dtype, through a
// bounded pinned staging buffer. Nothing the size of a model is ever allocated on the host.
#pragma once

#include <cstddef>
#include <cstdint>
#include <vector>

#include "backend/cuda/cuda_util.h"
#include "model/weights.h"

namespace cachet::backend::cuda {

class WeightUpload {
 public:
  // `fp16`: the device dtype is fp16, else bf16. `staging_bytes`: each of the two pinned
  // staging buffers (rounded down to whole elements, at least one).
  WeightUpload(bool fp16, std::size_t staging_bytes = std::size_t{16} << 20);

  // A device tensor made of `parts` stacked in order (a fused projection); after upload(),
  // `*slot` holds its device address. The parts must outlive upload().
  void add(std::vector<const model::HostTensor*> parts, const void** slot);
  // Device bytes the tensors added so far take (each 256-byte aligned).
  std::size_t device_bytes() const { return total_; }
  // Allocates the device buffer, copies every tensor on `stream` (converting on the host when
  // the stored dtype is not the device dtype; the same bytes when it is) and waits for the
  // copies. Throws cachet::Error for a failed allocation or copy.
  DeviceBuffer upload(cudaStream_t stream);

 private:
  struct Piece {
    std::vector<const model::HostTensor*> parts;
    std::size_t offset = 0;  // bytes into the device buffer
    const void** slot = nullptr;
  };
  // Elements [first, first + count) of `t` in the device dtype, into `dst`.
  void stage(const model::HostTensor& t, std::int64_t first, std::int64_t count,
             std::uint16_t* dst);

  bool fp16_;
  std::size_t staging_elems_;
  std::vector<Piece> pieces_;
  std::size_t total_ = 0;
  std::vector<float> widened_;  // one chunk as fp32, when converting
};

}  // namespace cachet::backend::cuda
