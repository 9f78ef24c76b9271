// Internal to src/model: explanations of expected tensor shapes for loader messages.
#pragma once

#include <string>

#include "model/model_config.h"

namespace cachet::model {

// The config.json fields an expected tensor's shape comes from, with their values, e.g.
// "[num_attention_heads * head_dim, hidden_size] = [8 * 16, 128]".
std::string shape_derivation(const ModelConfig& config, const std::string& name);

}  // namespace cachet::model
