#include <algorithm>
#include <cmath>
#include <limits>
#include <numeric>
#include <string>
#include <unordered_map>

#include "hymba/error.h"
#include "hymba/sampling.h"

namespace hymba {
namespace {

struct Candidate {
  int32_t id;
  float logit;
  float probability;
};

// Softmax over the candidates' logits, in place, with `temperature` applied.
void Normalize(std::vector<Candidate>& candidates, float temperature) {
  const float max_logit = candidates.front().logit;  // candidates are sorted
  double sum = 0;
  for (Candidate& c : candidates) {
    c.probability = static_cast<float>(std::exp((static_cast<double>(c.logit) - max_logit) / temperature));
    sum += c.probability;
  }
  for (Candidate& c : candidates) c.probability = static_cast<float>(c.probability / sum);
}

}  // namespace

Sampler::Sampler(const SamplingParams& params, int32_t vocab_size)
    : params_(params), vocab_size_(vocab_size), seed_(params.seed) {
  auto fail = [](const std::string& what) { throw Error("sampling: " + what); };
  if (!std::isfinite(params.temperature)) fail("--temp must be a finite number");
  if (!(params.top_p > 0.0f) || params.top_p > 1.0f) fail("--top-p must be in (0, 1], got " + std::to_string(params.top_p));
  if (params.min_p < 0.0f || params.min_p > 1.0f) fail("--min-p must be in [0, 1], got " + std::to_string(params.min_p));
  if (!(params.repeat_penalty > 0.0f)) fail("--repeat-penalty must be positive, got " + std::to_string(params.repeat_penalty));
  if (params.repeat_last_n < -1) fail("--repeat-last-n must be -1, 0 or positive");
  if (!std::isfinite(params.presence_penalty) || !std::isfinite(params.frequency_penalty)) {
    fail("--presence-penalty and --frequency-penalty must be finite");
  }
  for (const auto& [token, bias] : params.logit_bias) {
    if (token < 0 || token >= vocab_size) {
      fail("--logit-bias names token " + std::to_string(token) + ", outside the vocabulary (" + std::to_string(vocab_size) + ")");
    }
    if (std::isnan(bias) || bias == std::numeric_limits<float>::infinity()) {
      fail("--logit-bias for token " + std::to_string(token) + " must be a number below +inf (-inf bans the token), got " +
           std::to_string(bias));
    }
  }
  if (seed_ == 0xFFFFFFFF) seed_ = std::random_device{}();
  rng_.seed(seed_);
}

void Sampler::Accept(int32_t token) {
  if (params_.repeat_last_n == 0) return;
  history_.push_back(token);
  if (params_.repeat_last_n > 0 && history_.size() > static_cast<size_t>(params_.repeat_last_n)) history_.pop_front();
}

void Sampler::ApplyBiasAndPenalties(std::vector<float>& logits) const {
  for (const auto& [token, bias] : params_.logit_bias) logits[static_cast<size_t>(token)] += bias;
  if (history_.empty()) return;
  std::unordered_map<int32_t, int> counts;
  for (int32_t token : history_) ++counts[token];
  for (const auto& [token, count] : counts) {
    if (token < 0 || token >= vocab_size_) continue;
    float& logit = logits[static_cast<size_t>(token)];
    logit = logit > 0 ? logit / params_.repeat_penalty : logit * params_.repeat_penalty;
    logit -= static_cast<float>(count) * params_.frequency_penalty + params_.presence_penalty;
  }
}

int32_t Sampler::Sample(std::span<const float> raw_logits) {
  if (raw_logits.size() != static_cast<size_t>(vocab_size_)) {
    throw Error("sampling: got " + std::to_string(raw_logits.size()) + " logits for a vocabulary of " +
                std::to_string(vocab_size_));
  }
  std::vector<float> logits(raw_logits.begin(), raw_logits.end());
  ApplyBiasAndPenalties(logits);

  std::vector<Candidate> candidates;
  candidates.reserve(logits.size());
  for (size_t i = 0; i < logits.size(); ++i) {
    if (std::isnan(logits[i]) || logits[i] == std::numeric_limits<float>::infinity()) {
      // Garbage in: drawing from it would be silent garbage out.
      throw Error("sampling: the logit of token " + std::to_string(i) + " is " + std::to_string(raw_logits[i]) +
                  (std::isfinite(raw_logits[i]) ? " after the penalties" : "") +
                  ": the model's numbers overflowed (an f16 cache or f16 weights can)");
    }
    if (logits[i] != -std::numeric_limits<float>::infinity()) candidates.push_back({static_cast<int32_t>(i), logits[i], 0});
  }
  if (candidates.empty()) throw Error("sampling: every token is banned (all logits are -inf)");
  auto by_logit = [](const Candidate& a, const Candidate& b) { return a.logit > b.logit || (a.logit == b.logit && a.id < b.id); };

  if (params_.temperature <= 0.0f) return std::min_element(candidates.begin(), candidates.end(), by_logit)->id;

  if (params_.top_k > 0 && static_cast<size_t>(params_.top_k) < candidates.size()) {
    std::partial_sort(candidates.begin(), candidates.begin() + params_.top_k, candidates.end(), by_logit);
    candidates.resize(static_cast<size_t>(params_.top_k));
  } else {
    std::sort(candidates.begin(), candidates.end(), by_logit);
  }
  Normalize(candidates, 1.0f);
  if (params_.top_p < 1.0f) {
    float cumulative = 0.0f;
    size_t keep = 0;
    while (keep < candidates.size() && cumulative < params_.top_p) cumulative += candidates[keep++].probability;
    candidates.resize(std::max<size_t>(keep, 1));
  }
  if (params_.min_p > 0.0f) {
    const float threshold = candidates.front().probability * params_.min_p;
    size_t keep = 1;
    while (keep < candidates.size() && candidates[keep].probability >= threshold) ++keep;
    candidates.resize(keep);
  }
  Normalize(candidates, params_.temperature);
  std::uniform_real_distribution<double> uniform(0.0, 1.0);
  double draw = uniform(rng_);
  for (const Candidate& c : candidates) {
    draw -= c.probability;
    if (draw < 0) return c.id;
  }
  return candidates.back().id;  // rounding left a sliver of probability
}

}  // namespace hymba
