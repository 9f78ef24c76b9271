// An independent fp64 reference forward pass: dense (no paging, no KV cache), written with
// straightforward loops from the Hugging Face modeling code, for checking the backends.
#pragma once

#include <span>
#include <vector>

#include "cachet/types.h"
#include "model/model_config.h"
#include "model/weights.h"

namespace cachet::testing {

// Logits of every position of `tokens`: [tokens.size()][vocab_size], fp64.
std::vector<std::vector<double>> reference_forward(const model::ModelConfig& config,
                                                   const model::ModelWeights& weights,
                                                   std::span<const TokenId> tokens);

}  // namespace cachet::testing
