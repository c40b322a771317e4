#include "hymba/generate.h"

#include <algorithm>
#include <chrono>

#include "hymba/error.h"

namespace hymba {

TextStream::TextStream(const Tokenizer& tokenizer, std::vector<std::string> stop_strings, bool keep_leading_space)
    : tokenizer_(tokenizer), stop_strings_(std::move(stop_strings)), keep_leading_space_(keep_leading_space) {
  std::erase_if(stop_strings_, [](const std::string& s) { return s.empty(); });
}

size_t TextStream::IncompleteUtf8Tail() const {
  // Walk back over trailing byte pieces to the lead byte of the last character.
  size_t continuation = 0;
  for (size_t back = 1; back <= ids_.size() && back <= 4; ++back) {
    const std::optional<uint8_t> byte = tokenizer_.ByteValue(ids_[ids_.size() - back]);
    if (!byte) return 0;
    if ((*byte & 0xC0) == 0x80) {  // continuation byte
      ++continuation;
      continue;
    }
    const size_t length = (*byte & 0xE0) == 0xC0 ? 2 : (*byte & 0xF0) == 0xE0 ? 3 : (*byte & 0xF8) == 0xF0 ? 4 : 1;
    return continuation + 1 < length ? back : 0;
  }
  return 0;  // only continuation bytes: invalid UTF-8, shown as it is
}

std::string TextStream::Release(bool final) {
  if (stopped_) return "";
  const size_t stable = ids_.size() - (final ? 0 : IncompleteUtf8Tail());
  std::string decoded = tokenizer_.Decode(std::span(ids_).first(stable));
  if (keep_leading_space_ && stable > 0 && tokenizer_.PieceText(ids_[0]).starts_with(' ') && !decoded.starts_with(' ')) {
    decoded.insert(0, 1, ' ');
  }
  size_t end = decoded.size();
  // The earliest stop string in the text not yet released ends generation.
  size_t longest_stop = 0;
  for (const std::string& stop : stop_strings_) longest_stop = std::max(longest_stop, stop.size());
  const size_t search_from = emitted_.size() > longest_stop ? emitted_.size() - longest_stop : 0;
  for (const std::string& stop : stop_strings_) {
    const size_t found = decoded.find(stop, search_from);
    if (found != std::string::npos && found < end) {
      end = found;
      stopped_ = true;
    }
  }
  if (!stopped_ && !final) {
    // Hold back a tail that may be the start of a stop string.
    for (const std::string& stop : stop_strings_) {
      for (size_t length = std::min(stop.size() - 1, decoded.size()); length > 0; --length) {
        if (decoded.compare(decoded.size() - length, length, stop, 0, length) == 0) {
          end = std::min(end, decoded.size() - length);
          break;
        }
      }
    }
  }
  if (end <= emitted_.size()) return "";
  std::string released = decoded.substr(emitted_.size(), end - emitted_.size());
  emitted_ += released;
  return released;
}

std::string TextStream::Push(int32_t token) {
  ids_.push_back(token);
  return Release(false);
}

std::string TextStream::Finish() { return Release(true); }

const char* StopReasonName(StopReason reason) {
  switch (reason) {
    case StopReason::kEos: return "eos";
    case StopReason::kStopString: return "stop";
    case StopReason::kMaxTokens: return "length";
    case StopReason::kContextLimit: return "context";
  }
  return "?";
}

int32_t DrawableIds(const Model& model, const Tokenizer& tokenizer) {
  return std::min(static_cast<int32_t>(model.config().vocab_size), tokenizer.vocab_size());
}

GenerationResult Generate(const Model& model, const Tokenizer& tokenizer, Sequence& sequence,
                          std::span<const int32_t> prompt, const GenerationOptions& options,
                          const std::function<void(std::string_view)>& on_text) {
  using Clock = std::chrono::steady_clock;
  const Config& config = model.config();
  if (options.max_tokens < -1) throw Error("-n must be -1 (no limit) or at least 0");
  const int32_t drawable = DrawableIds(model, tokenizer);
  Sampler sampler(options.sampling, drawable);
  TextStream stream(tokenizer, options.stop);
  auto emit = [&](const std::string& text) {
    if (!text.empty() && on_text) on_text(text);
  };

  GenerationResult result;
  result.prompt_tokens = static_cast<int>(prompt.size());
  for (int32_t token : options.history) sampler.Accept(token);
  for (int32_t token : prompt) sampler.Accept(token);
  const auto prefill_start = Clock::now();
  std::vector<float> logits = model.Append(sequence, prompt);
  result.prompt_seconds = std::chrono::duration<double>(Clock::now() - prefill_start).count();
  if (options.after_prompt) options.after_prompt(sequence);

  const auto generation_start = Clock::now();
  while (true) {
    if (options.max_tokens >= 0 && static_cast<int>(result.tokens.size()) >= options.max_tokens) {
      result.stop_reason = StopReason::kMaxTokens;
      break;
    }
    const int32_t token = sampler.Sample(std::span(logits).first(static_cast<size_t>(drawable)));
    if (std::find(config.eos_token_ids.begin(), config.eos_token_ids.end(), token) != config.eos_token_ids.end()) {
      result.stop_reason = StopReason::kEos;
      break;
    }
    result.tokens.push_back(token);
    sampler.Accept(token);
    emit(stream.Push(token));
    if (stream.stopped()) {
      result.stop_reason = StopReason::kStopString;
      break;
    }
    if (sequence.positions() >= config.max_position_embeddings) {
      result.stop_reason = StopReason::kContextLimit;
      break;
    }
    logits = model.Append(sequence, std::span(&token, 1));
  }
  emit(stream.Finish());
  result.generation_seconds = std::chrono::duration<double>(Clock::now() - generation_start).count();
  result.text = stream.text();
  return result;
}

}  // namespace hymba
