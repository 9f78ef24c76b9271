// Built against the installed package: proves the headers, the library and the CMake
// package config work outside the source tree.
//   consumer MODEL_DIR
#include <cachet/engine.h>
#include <cachet/version.h>

#include <cstdio>
#include <cstring>

// The package, the headers and the library linked at run time agree on the version.
bool versions_agree() {
  const cachet::Version v = cachet::version();
  char linked[64];
  std::snprintf(linked, sizeof linked, "%d.%d.%d", v.major, v.minor, v.patch);
  std::printf("consumer: cachet %s (headers %s, package %s)\n", linked, CACHET_VERSION_STRING,
              CACHET_PACKAGE_VERSION);
  return std::strcmp(linked, CACHET_VERSION_STRING) == 0 &&
         std::strcmp(linked, CACHET_PACKAGE_VERSION) == 0;
}

// An error thrown inside the library is caught here as cachet::Error, code and all.
bool errors_cross_the_library_boundary() {
  try {
    cachet::EngineConfig config;
    config.model_dir = "/nonexistent/model";
    cachet::Engine engine(config);
  } catch (const cachet::Error& e) {
    return e.code() == cachet::ErrorCode::kNotFound;
  } catch (...) {
  }
  std::fprintf(stderr, "consumer: the library's Error was not caught as cachet::Error\n");
  return false;
}

int main(int argc, char** argv) {
  if (argc < 2) return std::fprintf(stderr, "usage: %s MODEL_DIR\n", argv[0]), 2;
  if (!versions_agree() || !errors_cross_the_library_boundary()) return 1;
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
