// A multi-turn chat that streams each reply through submit()'s callback. Every turn resends
// the whole conversation (system message, earlier user messages and assistant replies) plus
// the new user message, as a stateless chat API does; the prefix cache serves everything
// the previous turn already computed, so each turn after the first computes little more
// than its new message.
//   streaming_chat MODEL_DIR [TURNS [MAX_TOKENS]]
//
// The user messages are scripted (no stdin). With a tokenizer.json in MODEL_DIR the turns
// are text (ChatML when the vocabulary has <|im_start|>) and replies stream as text;
// without one they are token ids and replies stream as ids. The last line says how many
// turns after the first hit the cache.
#include <cachet/engine.h>

#include <cstdio>
#include <cstdlib>
#include <future>
#include <memory>
#include <string>
#include <vector>

namespace {

const char* const kSystem =
    "You are a patient cooking tutor. Keep every answer short and practical, and ask a "
    "follow-up question when the student's plan is unclear.";

const char* const kUserMessages[] = {
    "I want to bake bread for the first time. Where do I start?",
    "I only have instant yeast. Does that change anything?",
    "How long should the dough rise in a cold kitchen?",
    "The crust came out pale. What went wrong?",
    "Can I freeze half of the loaf?",
    "Thanks! What should I bake next week?",
};
constexpr int kNumMessages = static_cast<int>(sizeof kUserMessages / sizeof kUserMessages[0]);

// Builds the conversation as token ids and only ever appends to it. Resending text and
// letting the engine re-tokenize would also work, but only up to the first place where
// the decoded reply tokenizes differently from the ids the model generated; appending the
// generated ids themselves keeps the previous turn an exact token prefix of the next.
class Conversation {
 public:
  explicit Conversation(const cachet::Engine& engine) : engine_(engine) {
    if (const cachet::Tokenizer* tok = engine.tokenizer())
      chatml_ = tok->token_to_id("<|im_start|>").has_value();
    append_text(chatml_ ? std::string("<|im_start|>system\n") + kSystem + "<|im_end|>\n"
                        : std::string(kSystem) + "\n\n",
                /*first=*/true);
  }

  void add_user(const std::string& message) {
    append_text(chatml_ ? "<|im_start|>user\n" + message + "<|im_end|>\n<|im_start|>assistant\n"
                        : "User: " + message + "\nAssistant:",
                false);
  }
  // The reply exactly as generated, ids included the stop/EOS token that ended it.
  void add_reply(const std::vector<cachet::TokenId>& ids) {
    ids_.insert(ids_.end(), ids.begin(), ids.end());
    // ChatML closes a turn with <|im_end|>; a reply cut at max_tokens has none yet.
    append_text(chatml_ ? "\n" : "\n\n", false);
  }
  const std::vector<cachet::TokenId>& ids() const { return ids_; }

 private:
  void append_text(const std::string& text, bool first) {
    if (const cachet::Tokenizer* tok = engine_.tokenizer()) {
      // Special tokens (e.g. Llama's BOS) belong at the start of the conversation only.
      auto ids = tok->encode(text, /*add_special_tokens=*/first);
      ids_.insert(ids_.end(), ids.begin(), ids.end());
      return;
    }
    // No tokenizer: ids derived deterministically from the text, nonsense to the model but
    // enough to show what the cache does.
    const auto vocab = static_cast<unsigned>(engine_.info().vocab_size);
    for (std::size_t i = 0; i < text.size(); i += 3)
      ids_.push_back(static_cast<cachet::TokenId>(
          (static_cast<unsigned char>(text[i]) * 31u + ids_.size() * 7u) % vocab));
  }

  const cachet::Engine& engine_;
  bool chatml_ = false;
  std::vector<cachet::TokenId> ids_;
};

}  // namespace

int main(int argc, char** argv) {
  if (argc < 2)
    return std::fprintf(stderr, "usage: %s MODEL_DIR [TURNS [MAX_TOKENS]]\n", argv[0]), 2;
  const int turns = argc > 2 ? std::atoi(argv[2]) : 4;
  const int max_tokens = argc > 3 ? std::atoi(argv[3]) : 16;
  if (turns < 1 || turns > kNumMessages || max_tokens < 1)
    return std::fprintf(stderr, "TURNS must be 1..%d, MAX_TOKENS >= 1\n", kNumMessages), 2;
  try {
    cachet::EngineConfig config;
    config.model_dir = argv[1];
    cachet::Engine engine(config);
    const bool text = engine.tokenizer() != nullptr;
    Conversation chat(engine);
    int hits = 0;
    for (int turn = 0; turn < turns; ++turn) {
      chat.add_user(kUserMessages[turn]);
      std::printf("user> %s\nassistant> ", kUserMessages[turn]);
      std::fflush(stdout);

      cachet::Request request;
      request.prompt_token_ids = chat.ids();
      request.params.temperature = 0.7f;
      request.params.seed = 1234 + static_cast<std::uint64_t>(turn);  // reproducible runs
      request.params.max_tokens = max_tokens;
      // The callback runs on the engine's thread: print what arrived and hand the final
      // output over through a promise. The callback owns the promise (shared_ptr), so it
      // stays alive while set_value() returns even after this thread has moved on; the
      // output is copied because update.output is valid only during the call.
      auto done = std::make_shared<std::promise<cachet::RequestOutput>>();
      auto future = done->get_future();
      engine.submit(request, [done, text](const cachet::RequestUpdate& update) {
        if (text) {
          std::fputs(update.new_text.c_str(), stdout);
        } else {
          for (auto id : update.new_token_ids) std::printf("%d ", id);
        }
        std::fflush(stdout);
        if (update.finished) done->set_value(*update.output);
      });
      const cachet::RequestOutput out = future.get();
      if (out.finish_reason == cachet::FinishReason::kError) {
        std::fprintf(stderr, "\nturn %d failed: %s\n", turn + 1, out.error.c_str());
        return 1;
      }
      chat.add_reply(out.token_ids);
      if (turn > 0 && out.num_cached_tokens > 0) ++hits;
      std::printf(
          "\n  [turn %d: %d of %zu prompt tokens from the cache, first token after "
          "%.2f ms, %s]\n",
          turn + 1, out.num_cached_tokens, out.prompt_token_ids.size(), out.ttft_ms,
          cachet::to_string(out.finish_reason).data());
    }
    std::printf("turns after the first that hit the cache: %d/%d\n", hits, turns - 1);
    return hits == turns - 1 ? 0 : 1;
  } catch (const cachet::Error& e) {
    std::fprintf(stderr, "streaming_chat: %s\n", e.what());
    return 1;
  }
}
