// model.safetensors.index.json parsing (WeightStore::open on a directory): the input is the
// index; the directory also holds two valid shards. An accepted index must resolve every
// tensor it lists to the shard it names, and never open a file outside the directory.
#include <cstddef>
#include <cstdint>
#include <map>
#include <string>

#include "fuzz_util.h"
#include "model/safetensors.h"

using namespace cachet;

namespace {

// shard-a.safetensors: a [2, 3], b [4]; shard-b.safetensors: c [1], d [] (a scalar).
const std::filesystem::path& model_dir() {
  static const std::filesystem::path dir = [] {
    auto d = fuzz::scratch_dir() / "model";
    std::filesystem::create_directories(d);
    model::write_safetensors(d / "shard-a.safetensors",
                             {{"a", model::DType::kF32, {2, 3}, {1, 2, 3, 4, 5, 6}},
                              {"b", model::DType::kBF16, {4}, {1, 2, 3, 4}}});
    model::write_safetensors(d / "shard-b.safetensors", {{"c", model::DType::kF16, {1}, {7}},
                                                         {"d", model::DType::kF32, {}, {8}}});
    // A file next to the model directory that no index may reach.
    model::write_safetensors(fuzz::scratch_dir() / "outside.safetensors",
                             {{"secret", model::DType::kF32, {1}, {9}}});
    return d;
  }();
  return dir;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  const auto& dir = model_dir();
  fuzz::write_file(dir / "model.safetensors.index.json", data, size);
  std::optional<model::WeightStore> store;
  if (!fuzz::accepts([&] { store = model::WeightStore::open(dir); })) return 0;

  const std::map<std::string, std::string> home = {{"a", "shard-a.safetensors"},
                                                   {"b", "shard-a.safetensors"},
                                                   {"c", "shard-b.safetensors"},
                                                   {"d", "shard-b.safetensors"}};
  for (const auto& [name, view] : store->tensors()) {
    fuzz::require(view != nullptr && view->name == name, "index entry without its tensor");
    auto it = home.find(name);
    fuzz::require(it != home.end(), "tensor '" + name + "' resolved from outside the shards");
    fuzz::require(std::filesystem::path(view->file).filename() == it->second,
                  "tensor '" + name + "' resolved from " + view->file);
    fuzz::require(store->find(name) == view, "find() disagrees with tensors()");
  }
  return 0;
}
