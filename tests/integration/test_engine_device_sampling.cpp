// The engine's path for backends that sample next to the logits (forward_sample), run on the
// CPU: a backend wrapper plays the device, sampling each row from the specs the engine builds
// (parameters, stream position, logits edits) the way kernels/sampling.cu and
// kernels/logits_processing.cu define it. The engine's outputs through that path must equal
// its host-sampling outputs token for token and logprob for logprob, for every logits
// processor, n samples and random draws: what the engine hands a device sampler is right.
#include <gtest/gtest.h>

#include <memory>
#include <vector>

#include "backend/backend.h"
#include "cachet/engine.h"
#include "engine/engine_testing.h"
#include "sampling/logit_edit.h"
#include "sampling/sampler.h"
#include "support/forwarding_backend.h"
#include "support/tiny_model.h"

namespace cachet {
namespace {

using testing::TinyModel;

class SamplingBackend : public testing::ForwardingBackend {
 public:
  SamplingBackend(std::unique_ptr<backend::Backend> inner, std::shared_ptr<int> rows_with_edits)
      : ForwardingBackend(std::move(inner)), rows_with_edits_(std::move(rows_with_edits)) {}
  bool samples_on_device() const override { return true; }

  void forward_sample(const backend::ForwardBatch& batch,
                      const std::vector<backend::SampleSpec>& specs,
                      std::vector<backend::SampledToken>& out) override {
    forward(batch, logits_);
    const auto vocab = static_cast<std::size_t>(vocab_size());
    out.resize(specs.size());
    for (std::size_t r = 0; r < specs.size(); ++r) {
      const std::span<const float> raw(logits_.data() + r * vocab, vocab);
      out[r] = sample_row(raw, specs[r]);
      *rows_with_edits_ += specs[r].edits.empty() ? 0 : 1;
    }
  }

 private:
  static backend::SampledToken sample_row(std::span<const float> raw,
                                          const backend::SampleSpec& spec) {
    std::vector<float> row(raw.begin(), raw.end());
    for (const sampling::LogitEdit& e : spec.edits) {
      float& x = row[static_cast<std::size_t>(e.id)];
      x = sampling::apply_logit_edit(x, e);
    }
    SamplingParams p;
    p.temperature = spec.temperature;
    p.top_k = spec.top_k;
    p.top_p = spec.top_p;
    p.min_p = spec.min_p;
    backend::SampledToken t;
    t.token = sampling::sample(row, p, spec.seed, spec.counter);
    if (spec.num_logprobs >= 0) {
      const auto list = sampling::top_logprobs(raw, spec.num_logprobs, t.token);
      for (std::size_t i = 0; i < list.size(); ++i) {
        if (list[i].id == t.token) t.logprob = list[i].logprob;
        if (static_cast<std::int32_t>(i) < spec.num_logprobs) {
          t.top_ids.push_back(list[i].id);
          t.top_logprobs.push_back(list[i].logprob);
        }
      }
    }
    return t;
  }

  std::vector<float> logits_;
  std::shared_ptr<int> rows_with_edits_;  // rows sampled with logits edits
};

std::vector<Request> requests(int vocab) {
  std::vector<Request> out;
  const auto add = [&](auto&& set) {
    SamplingParams p;
    p.temperature = 3.0f;
    p.top_k = 40;
    p.max_tokens = 14;
    p.seed = 1000 + out.size();
    p.logprobs = 3;
    set(p);
    std::vector<TokenId> prompt;
    for (int i = 0; i < 11 + static_cast<int>(out.size()); ++i)
      prompt.push_back((i * 7 + static_cast<int>(out.size())) % 9 + 2);
    out.push_back({prompt, p, {}, {}});
  };
  add([](SamplingParams&) {});
  add([](SamplingParams& p) { p.repetition_penalty = 1.7f; });
  add([](SamplingParams& p) { p.repetition_penalty = 0.7f; });
  add([](SamplingParams& p) { p.presence_penalty = 1.5f; });
  add([](SamplingParams& p) { p.frequency_penalty = -1.2f; });
  add([=](SamplingParams& p) { p.logit_bias = {{3, 4.0f}, {vocab - 1, 6.0f}, {5, -100.0f}}; });
  add([](SamplingParams& p) {
    p.min_tokens = 10;
    p.ignore_eos = false;
    p.stop_token_ids = {2, 4};
  });
  add([](SamplingParams& p) {
    p.n = 3;
    p.repetition_penalty = 1.3f;
    p.frequency_penalty = 0.4f;
    p.presence_penalty = 0.3f;
    p.temperature = 0.0f;
  });
  return out;
}

TEST(EngineDeviceSampling, TheDevicePathEqualsTheHostPath) {
  TinyModel m;
  const auto reqs = requests(m.vocab());
  Engine host(m.engine_config());
  const auto expected = host.generate(reqs);

  auto rows_with_edits = std::make_shared<int>(0);
  Engine engine = engine::EngineTestAccess::make(
      m.engine_config(), [&](std::unique_ptr<backend::Backend> inner) {
        return std::make_unique<SamplingBackend>(std::move(inner), rows_with_edits);
      });
  const auto got = engine.generate(reqs);
  ASSERT_EQ(got.size(), expected.size());
  for (std::size_t i = 0; i < got.size(); ++i) {
    SCOPED_TRACE(i);
    ASSERT_NE(got[i].finish_reason, FinishReason::kError) << got[i].error;
    EXPECT_EQ(got[i].sample_index, expected[i].sample_index);
    EXPECT_EQ(got[i].token_ids, expected[i].token_ids);
    ASSERT_EQ(got[i].logprobs.size(), expected[i].logprobs.size());
    for (std::size_t t = 0; t < got[i].logprobs.size(); ++t) {
      ASSERT_EQ(got[i].logprobs[t].size(), expected[i].logprobs[t].size()) << t;
      for (std::size_t k = 0; k < got[i].logprobs[t].size(); ++k) {
        EXPECT_EQ(got[i].logprobs[t][k].id, expected[i].logprobs[t][k].id);
        EXPECT_EQ(got[i].logprobs[t][k].logprob, expected[i].logprobs[t][k].logprob);
      }
    }
  }
  // Every processed request's rows went through the edits (7 requests, 14 tokens or fewer).
  EXPECT_GT(*rows_with_edits, 6 * 10);
}

}  // namespace
}  // namespace cachet
