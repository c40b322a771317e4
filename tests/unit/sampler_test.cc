#include "hymba/sampling.h"

#include <gtest/gtest.h>

#include <cmath>
#include <limits>
#include <map>

#include "hymba/error.h"

namespace hymba {
namespace {

const std::vector<float> kLogits = {1.0f, 3.0f, 2.0f, 0.5f, 3.0f, -1.0f};

SamplingParams Plain() {
  SamplingParams p;
  p.top_k = 0;
  p.top_p = 1.0f;
  p.min_p = 0.0f;
  p.temperature = 1.0f;
  p.seed = 1234;
  return p;
}

std::map<int32_t, double> Frequencies(const SamplingParams& params, const std::vector<float>& logits, int draws) {
  Sampler sampler(params, static_cast<int32_t>(logits.size()));
  std::map<int32_t, double> counts;
  for (int i = 0; i < draws; ++i) counts[sampler.Sample(logits)] += 1.0 / draws;
  return counts;
}

TEST(Sampler, GreedyTakesTheFirstHighestLogit) {
  SamplingParams p = Plain();
  p.temperature = 0.0f;
  Sampler sampler(p, 6);
  EXPECT_EQ(sampler.Sample(kLogits), 1);
}

TEST(Sampler, SameSeedSameTokens) {
  SamplingParams p = Plain();
  p.seed = 42;
  Sampler a(p, 6), b(p, 6);
  for (int i = 0; i < 50; ++i) EXPECT_EQ(a.Sample(kLogits), b.Sample(kLogits));
  SamplingParams random = Plain();
  random.seed = 0xFFFFFFFF;
  EXPECT_NE(Sampler(random, 6).seed(), 0xFFFFFFFFu);
}

TEST(Sampler, DrawsFollowTheSoftmaxAtTemperature) {
  SamplingParams p = Plain();
  p.temperature = 2.0f;
  const auto freq = Frequencies(p, kLogits, 200000);
  double normalizer = 0;
  for (float l : kLogits) normalizer += std::exp(l / 2.0);
  for (size_t i = 0; i < kLogits.size(); ++i) {
    const double expected = std::exp(kLogits[i] / 2.0) / normalizer;
    const double observed = freq.count(static_cast<int32_t>(i)) ? freq.at(static_cast<int32_t>(i)) : 0.0;
    EXPECT_NEAR(observed, expected, 0.005) << "token " << i;
  }
}

TEST(Sampler, TopKKeepsTheKBest) {
  SamplingParams p = Plain();
  p.top_k = 2;
  const auto freq = Frequencies(p, kLogits, 20000);
  EXPECT_EQ(freq.size(), 2u);
  EXPECT_NEAR(freq.at(1), 0.5, 0.02);
  EXPECT_NEAR(freq.at(4), 0.5, 0.02);
}

TEST(Sampler, TopPKeepsTheSmallestNucleus) {
  // probabilities 0.5, 0.3, 0.2: top-p 0.7 keeps the first two (0.5 < 0.7 <= 0.8).
  const std::vector<float> logits = {std::log(0.5f), std::log(0.3f), std::log(0.2f)};
  SamplingParams p = Plain();
  p.top_p = 0.7f;
  const auto freq = Frequencies(p, logits, 20000);
  EXPECT_EQ(freq.size(), 2u);
  EXPECT_NEAR(freq.at(0), 0.625, 0.02);
}

TEST(Sampler, MinPDropsTokensBelowAFractionOfTheBest) {
  const std::vector<float> logits = {std::log(0.5f), std::log(0.3f), std::log(0.2f)};
  SamplingParams p = Plain();
  p.min_p = 0.5f;  // keeps p >= 0.25
  const auto freq = Frequencies(p, logits, 20000);
  EXPECT_EQ(freq.size(), 2u);
  EXPECT_FALSE(freq.count(2));
}

TEST(Sampler, RepetitionPenaltyDividesPositiveAndMultipliesNegativeLogits) {
  SamplingParams p = Plain();
  p.temperature = 0.0f;
  p.repeat_penalty = 4.0f;
  Sampler sampler(p, 3);
  const std::vector<float> logits = {2.0f, 1.0f, -1.0f};
  EXPECT_EQ(sampler.Sample(logits), 0);
  sampler.Accept(0);  // 2 / 4 = 0.5 < 1
  EXPECT_EQ(sampler.Sample(logits), 1);
  sampler.Accept(1);  // 1 / 4 = 0.25 < 0.5
  EXPECT_EQ(sampler.Sample(logits), 0);
}

TEST(Sampler, PenaltyWindowForgetsOldTokens) {
  SamplingParams p = Plain();
  p.temperature = 0.0f;
  p.repeat_penalty = 10.0f;
  p.repeat_last_n = 2;
  Sampler sampler(p, 3);
  const std::vector<float> logits = {2.0f, 1.0f, 0.5f};
  sampler.Accept(0);
  sampler.Accept(2);
  EXPECT_EQ(sampler.Sample(logits), 1);  // 0 is penalised
  sampler.Accept(2);                     // 0 leaves the window of two
  EXPECT_EQ(sampler.Sample(logits), 0);
}

TEST(Sampler, PresenceAndFrequencyPenalties) {
  SamplingParams p = Plain();
  p.temperature = 0.0f;
  p.frequency_penalty = 0.4f;
  p.presence_penalty = 0.3f;
  Sampler sampler(p, 2);
  const std::vector<float> logits = {1.0f, 0.0f};
  sampler.Accept(0);
  EXPECT_EQ(sampler.Sample(logits), 0);  // 1 - 0.4 - 0.3 = 0.3 > 0
  sampler.Accept(0);                     // 1 - 0.8 - 0.3 < 0
  EXPECT_EQ(sampler.Sample(logits), 1);
}

TEST(Sampler, LogitBiasCanBanAndForce) {
  SamplingParams p = Plain();
  p.temperature = 0.0f;
  p.logit_bias = {{1, -std::numeric_limits<float>::infinity()}, {4, -std::numeric_limits<float>::infinity()}};
  EXPECT_EQ(Sampler(p, 6).Sample(kLogits), 2);
  p.logit_bias = {{5, 100.0f}};
  EXPECT_EQ(Sampler(p, 6).Sample(kLogits), 5);
}

TEST(Sampler, BadParametersAreRefusedByName) {
  auto refused = [](SamplingParams p, const std::string& name) {
    try {
      Sampler(p, 6);
      ADD_FAILURE() << "accepted " << name;
    } catch (const Error& e) {
      EXPECT_NE(std::string(e.what()).find(name), std::string::npos) << e.what();
    }
  };
  SamplingParams p = Plain();
  p.top_p = 0.0f;
  refused(p, "--top-p");
  p = Plain();
  p.min_p = 2.0f;
  refused(p, "--min-p");
  p = Plain();
  p.repeat_penalty = 0.0f;
  refused(p, "--repeat-penalty");
  p = Plain();
  p.logit_bias = {{6, 1.0f}};
  refused(p, "--logit-bias");
  p = Plain();
  p.temperature = std::numeric_limits<float>::quiet_NaN();
  refused(p, "--temp");
  p = Plain();
  p.temperature = 0.0f;
  p.logit_bias = {{0, -INFINITY}, {1, -INFINITY}, {2, -INFINITY}, {3, -INFINITY}, {4, -INFINITY}, {5, -INFINITY}};
  EXPECT_THROW(Sampler(p, 6).Sample(kLogits), Error);
  EXPECT_THROW(Sampler(Plain(), 6).Sample(std::vector<float>(5)), Error);
  p = Plain();
  p.logit_bias = {{2, INFINITY}};  // exp(inf - inf) would make every probability NaN
  refused(p, "--logit-bias for token 2");
}

// Logits that are NaN or +inf (a model whose numbers overflowed) are an
// error naming the token, at any temperature: sorting NaN is undefined and
// drawing from it would be silent garbage.
TEST(Sampler, NonFiniteLogitsAreAnError) {
  for (float temperature : {0.0f, 0.8f}) {
    for (float bad : {NAN, INFINITY}) {
      SamplingParams p = Plain();
      p.temperature = temperature;
      std::vector<float> logits(kLogits.begin(), kLogits.end());
      logits[3] = bad;
      try {
        Sampler(p, 6).Sample(logits);
        ADD_FAILURE() << "sampled from a logit of " << bad;
      } catch (const Error& e) {
        EXPECT_NE(std::string(e.what()).find("logit of token 3"), std::string::npos) << e.what();
      }
    }
  }
}

}  // namespace
}  // namespace hymba
