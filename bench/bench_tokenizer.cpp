// Encode throughput (MB/s, one thread) on a large mixed text: the public corpus repeated
// plus seeded generated multilingual text. `--write-corpus=PATH` writes that text to PATH
// (one JSON string) so bench/hf_tokenizers_encode.mjs can time Hugging Face on the same
// bytes.
#include <benchmark/benchmark.h>

#include <cstring>
#include <fstream>
#include <nlohmann/json.hpp>
#include <random>
#include <string>
#include <vector>

#include "cachet/tokenizer.h"

namespace {

const std::string kDataDir = CACHET_TEST_DATA_DIR;

std::string make_corpus() {
  std::vector<std::string> texts;
  std::ifstream in(kDataDir + "/tokenizers/public_corpus.jsonl");
  std::string line;
  while (std::getline(in, line)) {
    if (!line.empty()) texts.push_back(nlohmann::json::parse(line).get<std::string>());
  }
  std::string corpus;
  for (int round = 0; round < 300; ++round) {
    for (const auto& t : texts) {
      corpus += t;
      corpus += '\n';
    }
  }
  // Generated text: words of several scripts, numbers, code and emoji, fixed seed.
  const std::vector<std::string> words = {"the",
                                          "tokenizer",
                                          "inference",
                                          "Hello",
                                          "world",
                                          "don't",
                                          "they're",
                                          "cachet",
                                          "quickly",
                                          "résumé",
                                          "naïve",
                                          "Straße",
                                          "数据",
                                          "模型",
                                          "推理",
                                          "こんにちは",
                                          "東京",
                                          "Привет",
                                          "мир",
                                          "مرحبا",
                                          "नमस्ते",
                                          "안녕하세요",
                                          "Γειά",
                                          "😀",
                                          "👩‍💻",
                                          "🇫🇷",
                                          "x = f(y);",
                                          "for (int i = 0; i < n; ++i)",
                                          "{\"key\": [1, 2, 3]}",
                                          "12345678",
                                          "3.14159",
                                          "2024-06-01",
                                          "   ",
                                          "\t",
                                          "\r\n",
                                          "...",
                                          "!!!",
                                          "$100",
                                          "e.g.",
                                          "I'm"};
  std::mt19937 rng(1234);
  std::uniform_int_distribution<std::size_t> pick(0, words.size() - 1);
  std::uniform_int_distribution<int> sep(0, 9);
  const std::size_t generated_bytes = 4 * 1024 * 1024;
  const std::size_t target = corpus.size() + generated_bytes;
  while (corpus.size() < target) {
    corpus += words[pick(rng)];
    const int s = sep(rng);
    corpus += s == 0 ? "\n" : s == 1 ? ", " : s == 2 ? ". " : " ";
  }
  return corpus;
}

const std::string& corpus() {
  static const std::string text = make_corpus();
  return text;
}

void encode_family(benchmark::State& state, const char* family) {
  const auto tok = cachet::Tokenizer::from_file(kDataDir + "/tokenizers/" + family);
  const std::string& text = corpus();
  std::size_t tokens = 0;
  for (auto _ : state) {
    const auto ids = tok.encode(text, false);
    tokens = ids.size();
    benchmark::DoNotOptimize(ids.data());
  }
  state.SetBytesProcessed(static_cast<int64_t>(state.iterations() * text.size()));
  state.counters["tokens"] = static_cast<double>(tokens);
  state.counters["MB"] = static_cast<double>(text.size()) / 1e6;
}

// The same text one line at a time (prompt-sized inputs rather than one 5 MB string).
void encode_lines(benchmark::State& state, const char* family) {
  const auto tok = cachet::Tokenizer::from_file(kDataDir + "/tokenizers/" + family);
  const std::string& text = corpus();
  std::vector<std::string_view> lines;
  for (std::size_t start = 0; start < text.size();) {
    std::size_t end = text.find('\n', start);
    end = end == std::string::npos ? text.size() : end + 1;
    lines.push_back(std::string_view(text).substr(start, end - start));
    start = end;
  }
  for (auto _ : state) {
    for (const auto line : lines) benchmark::DoNotOptimize(tok.encode(line, false).data());
  }
  state.SetBytesProcessed(static_cast<int64_t>(state.iterations() * text.size()));
  state.counters["lines"] = static_cast<double>(lines.size());
}

// Cold: a fresh tokenizer per iteration, so no word is in the BPE cache (load time excluded).
void encode_cold(benchmark::State& state, const char* family) {
  const std::string& text = corpus();
  for (auto _ : state) {
    state.PauseTiming();
    auto tok = cachet::Tokenizer::from_file(kDataDir + "/tokenizers/" + family);
    state.ResumeTiming();
    benchmark::DoNotOptimize(tok.encode(text, false).data());
  }
  state.SetBytesProcessed(static_cast<int64_t>(state.iterations() * text.size()));
}

BENCHMARK_CAPTURE(encode_family, qwen3, "qwen3")->Unit(benchmark::kMillisecond);
BENCHMARK_CAPTURE(encode_lines, qwen3, "qwen3")->Unit(benchmark::kMillisecond);
BENCHMARK_CAPTURE(encode_cold, qwen3, "qwen3")->Unit(benchmark::kMillisecond)->Iterations(3);
BENCHMARK_CAPTURE(encode_family, llama3_style, "llama3_style")->Unit(benchmark::kMillisecond);
BENCHMARK_CAPTURE(encode_family, llama2_style, "llama2_style")->Unit(benchmark::kMillisecond);

}  // namespace

int main(int argc, char** argv) {
  for (int i = 1; i < argc; ++i) {
    if (std::strncmp(argv[i], "--write-corpus=", 15) == 0) {
      std::ofstream(argv[i] + 15, std::ios::binary) << nlohmann::json(corpus()).dump() << "\n";
      return 0;
    }
  }
  benchmark::Initialize(&argc, argv);
  benchmark::RunSpecifiedBenchmarks();
  benchmark::Shutdown();
  return 0;
}
