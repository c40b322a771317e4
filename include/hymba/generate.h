// Generation: prefill a prompt into a sequence, then sample token by token,
// streaming text that never splits a UTF-8 character or shows a stop string.
#pragma once

#include <cstdint>
#include <functional>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "hymba/model.h"
#include "hymba/sampling.h"
#include "hymba/tokenizer.h"

namespace hymba {

// Incremental detokenizer for generated tokens. Text is released only when it
// is final: a character whose byte-fallback pieces have not all arrived, or a
// tail that could still become a stop string, is held back. The first piece
// loses its dummy-prefix space, as HF decoding of the generated ids does,
// unless `keep_leading_space` (text that continues a prompt, as a completion
// API returns it: "Moses," then " And").
class TextStream {
 public:
  TextStream(const Tokenizer& tokenizer, std::vector<std::string> stop_strings, bool keep_leading_space = false);

  // Adds a generated token; returns the text that became final.
  std::string Push(int32_t token);
  // No more tokens: releases what was held back (never a stop string).
  std::string Finish();

  bool stopped() const { return stopped_; }  // a stop string appeared
  const std::string& text() const { return emitted_; }

 private:
  size_t IncompleteUtf8Tail() const;  // trailing ids that form an unfinished character
  std::string Release(bool final);

  const Tokenizer& tokenizer_;
  std::vector<std::string> stop_strings_;
  bool keep_leading_space_;
  std::vector<int32_t> ids_;
  std::string emitted_;
  bool stopped_ = false;
};

struct GenerationOptions {
  int max_tokens = -1;  // -1: until EOS, a stop string or the context limit
  std::vector<std::string> stop;
  SamplingParams sampling;
  // Tokens the sequence was fed before `prompt` (a chat's earlier turns): the
  // repetition penalties see them as the prompt's own, as when a whole
  // conversation is the prompt.
  std::vector<int32_t> history;
  // Called once the prompt is in the sequence, before the first token is drawn.
  std::function<void(const Sequence&)> after_prompt;
};

enum class StopReason { kEos, kStopString, kMaxTokens, kContextLimit };
const char* StopReasonName(StopReason reason);  // "eos", "stop", "length", "context"

struct GenerationResult {
  std::vector<int32_t> tokens;  // generated ids, without the EOS that ended them
  std::string text;
  StopReason stop_reason = StopReason::kEos;
  int prompt_tokens = 0;
  double prompt_seconds = 0;
  double generation_seconds = 0;
};

// The ids generation draws from: the first min(model vocabulary, tokenizer
// size) ids, those both the model scores and the tokenizer knows. A checkpoint
// whose vocabulary is padded past its tokenizer's (to a multiple of 64, say)
// never draws a padding id, which has no text.
int32_t DrawableIds(const Model& model, const Tokenizer& tokenizer);

// Appends `prompt` to `sequence` and generates. `on_text` receives the text as
// it becomes final. The sequence keeps every token that was fed to the model.
GenerationResult Generate(const Model& model, const Tokenizer& tokenizer, Sequence& sequence,
                          std::span<const int32_t> prompt, const GenerationOptions& options,
                          const std::function<void(std::string_view)>& on_text = {});

}  // namespace hymba
