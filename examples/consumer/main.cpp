// Built against the installed package: proves the headers, the library and the CMake
// package config work outside the source tree.
//   consumer MODEL_DIR
#include <cachet/engine.h>

#include <cstdio>

int main(int argc, char** argv) {
  if (argc < 2) return std::fprintf(stderr, "usage: %s MODEL_DIR\n", argv[0]), 2;
  try {
    cachet::EngineConfig config;
    config.model_dir = argv[1];
    config.device = cachet::Device::kCpu;
    cachet::Engine engine(config);
    cachet::SamplingParams params;
    params.temperature = 0.0f;
    params.max_tokens = 4;
    params.ignore_eos = true;
    auto outputs = engine.generate({{1, 2, 3}}, params);
    std::printf("consumer: %s generated %zu tokens:", engine.info().architecture.c_str(),
                outputs[0].token_ids.size());
    for (auto id : outputs[0].token_ids) std::printf(" %d", id);
    std::printf("\n");
    return outputs[0].token_ids.size() == 4 ? 0 : 1;
  } catch (const cachet::Error& e) {
    std::fprintf(stderr, "consumer: %s\n", e.what());
    return 1;
  }
}
