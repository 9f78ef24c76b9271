// The smallest cachet program: build an engine from a model directory, generate, print.
//   simple_generate MODEL_DIR
#include <cachet/engine.h>

#include <cstdio>

int main(int argc, char** argv) {
  if (argc < 2) return std::fprintf(stderr, "usage: %s MODEL_DIR\n", argv[0]), 2;
  cachet::EngineConfig config;
  config.model_dir = argv[1];
  cachet::Engine engine(config);
  cachet::SamplingParams params;
  params.temperature = 0.0f;  // greedy
  params.max_tokens = 8;
  auto outputs = engine.generate({{1, 2, 3, 4}, {1, 2, 3, 5}}, params);
  for (const auto& out : outputs) {
    for (auto id : out.token_ids) std::printf("%d ", id);
    std::printf("(%s, first token after %.1f ms)\n", cachet::to_string(out.finish_reason).data(),
                out.ttft_ms);
  }
}
