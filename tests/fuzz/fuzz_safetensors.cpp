// safetensors header parsing: the input is a whole .safetensors file. An accepted file must
// describe tensors that lie inside it, do not overlap, and have numel * element size bytes.
#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <memory>
#include <vector>

#include "fuzz_util.h"
#include "model/safetensors.h"

using namespace cachet;

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  const auto path = fuzz::scratch_dir() / "model.safetensors";
  fuzz::write_file(path, data, size);
  std::unique_ptr<model::SafetensorsFile> file;
  if (!fuzz::accepts([&] { file = model::SafetensorsFile::open(path); })) return 0;

  // The header is at least 8 bytes of size prefix; all data lies after it, within the file.
  struct Range {
    const std::byte* begin;
    const std::byte* end;
  };
  std::vector<Range> ranges;
  for (const auto& [name, t] : file->tensors()) {
    fuzz::require(name == t.name, "tensor map key differs from the tensor's name");
    std::int64_t numel = 1;
    for (std::int64_t d : t.shape) {
      fuzz::require(d >= 0, "negative dimension accepted: " + name);
      numel *= d;
    }
    fuzz::require(t.numel() == numel, "numel() disagrees with the shape: " + name);
    fuzz::require(t.data.size() == static_cast<std::size_t>(numel) * model::dtype_size(t.dtype),
                  "data size is not numel * element size: " + name);
    if (!t.data.empty()) ranges.push_back({t.data.data(), t.data.data() + t.data.size()});
    // Touch every byte: a view outside the mapping faults here.
    unsigned sum = 0;
    for (std::byte b : t.data) sum += static_cast<unsigned>(b);
    (void)sum;
  }
  std::sort(ranges.begin(), ranges.end(),
            [](const Range& a, const Range& b) { return a.begin < b.begin; });
  for (std::size_t i = 1; i < ranges.size(); ++i)
    fuzz::require(ranges[i - 1].end <= ranges[i].begin, "two tensors overlap");
  return 0;
}
