// A backend that hands every call to another one: the base of the test wrappers that inject
// faults or change one behaviour (override just that call).
#pragma once

#include <memory>
#include <utility>
#include <vector>

#include "backend/backend.h"

namespace cachet::testing {

class ForwardingBackend : public backend::Backend {
 public:
  explicit ForwardingBackend(std::unique_ptr<backend::Backend> inner) : inner_(std::move(inner)) {}

  std::string_view name() const override { return inner_->name(); }
  const backend::KvCacheSpec& kv_spec() const override { return inner_->kv_spec(); }
  std::int32_t vocab_size() const override { return inner_->vocab_size(); }
  void forward(const backend::ForwardBatch& batch, std::vector<float>& logits) override {
    inner_->forward(batch, logits);
  }
  void poison_blocks(std::span<const std::int32_t> blocks) override {
    inner_->poison_blocks(blocks);
  }
  void allocate_host_tier(std::int64_t num_slots) override {
    inner_->allocate_host_tier(num_slots);
  }
  void save_blocks(std::span<const backend::HostCopy> copies) override {
    inner_->save_blocks(copies);
  }
  void load_blocks(std::span<const backend::HostCopy> copies) override {
    inner_->load_blocks(copies);
  }
  std::span<std::byte> host_slot(std::int64_t slot) override { return inner_->host_slot(slot); }
  void wait_for_copies() override { inner_->wait_for_copies(); }
  std::string kv_format() const override { return inner_->kv_format(); }
  void copy_block_prefixes(std::span<const backend::BlockPrefixCopy> copies) override {
    inner_->copy_block_prefixes(copies);
  }
  bool samples_on_device() const override { return inner_->samples_on_device(); }
  void forward_sample(const backend::ForwardBatch& batch,
                      const std::vector<backend::SampleSpec>& specs,
                      std::vector<backend::SampledToken>& out) override {
    inner_->forward_sample(batch, specs, out);
  }

 protected:
  backend::Backend& inner() { return *inner_; }

 private:
  std::unique_ptr<backend::Backend> inner_;
};

}  // namespace cachet::testing
