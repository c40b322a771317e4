// Turning logits into the next token, as llama.cpp's sampler chain does.
//
// Order, applied to the logits of every step:
//   1. logit bias (added; -inf bans a token)
//   2. repetition, presence and frequency penalties over the last
//      `repeat_last_n` tokens of the context, prompt included (llama.cpp
//      semantics: a penalised logit is divided by `repeat_penalty` when positive
//      and multiplied when negative, once per distinct token; then
//      logit -= count * frequency_penalty + (count > 0) * presence_penalty)
//   3. temperature <= 0: greedy, the highest logit (lowest id on ties)
//   4. top-k, 5. top-p (nucleus), 6. min-p (relative to the most likely token),
//   7. temperature, 8. a draw from the softmax with the seeded generator.
#pragma once

#include <cstdint>
#include <deque>
#include <map>
#include <random>
#include <span>
#include <vector>

namespace hymba {

struct SamplingParams {
  float temperature = 0.8f;
  int top_k = 40;         // <= 0: off
  float top_p = 0.95f;    // >= 1: off
  float min_p = 0.05f;    // <= 0: off
  float repeat_penalty = 1.0f;  // 1: off
  int repeat_last_n = 64;       // 0: off, -1: the whole context
  float presence_penalty = 0.0f;
  float frequency_penalty = 0.0f;
  std::map<int32_t, float> logit_bias;
  uint64_t seed = 0xFFFFFFFF;  // llama.cpp's "random seed" value: draw one from the OS
};

class Sampler {
 public:
  // Throws hymba::Error naming the parameter when a value is out of range.
  Sampler(const SamplingParams& params, int32_t vocab_size);

  // Adds a token of the context (prompt or generated) to the penalty window.
  void Accept(int32_t token);
  int32_t Sample(std::span<const float> logits);

  uint64_t seed() const { return seed_; }

 private:
  void ApplyBiasAndPenalties(std::vector<float>& logits) const;

  SamplingParams params_;
  int32_t vocab_size_;
  uint64_t seed_;
  std::mt19937_64 rng_;
  std::deque<int32_t> history_;  // the last repeat_last_n accepted tokens
};

}  // namespace hymba
