// config.json parsing. An accepted config must survive a round trip through the config.json
// cachet writes for it (model_config_to_json): parsing that gives the same config back.
#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>

#include "fuzz_util.h"
#include "model/model_config.h"

using namespace cachet;

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  const std::string_view text(reinterpret_cast<const char*>(data), size);
  model::ModelConfig config;
  if (!fuzz::accepts([&] { config = model::parse_model_config(text, "config.json"); })) return 0;

  fuzz::require(config.vocab_size > 0 && config.hidden_size > 0 && config.num_layers > 0 &&
                    config.num_heads > 0 && config.num_kv_heads > 0 && config.head_dim > 0,
                "a size that is not positive was accepted");
  fuzz::require(config.num_heads % config.num_kv_heads == 0,
                "num_attention_heads not a multiple of num_key_value_heads was accepted");
  const std::string written = model::model_config_to_json(config);
  model::ModelConfig again;
  if (!fuzz::accepts([&] { again = model::parse_model_config(written, "written config.json"); }))
    fuzz::bug("cachet cannot read the config.json it writes:\n" + written);
  fuzz::require(again == config, "config changed in a round trip:\n" + written);
  return 0;
}
