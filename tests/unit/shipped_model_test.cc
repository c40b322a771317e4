// The model that ships with the project (models/hymba-kjv-tiny, made by
// tools/train/train_tiny.py): greedy decoding reproduces the float64
// reference's greedy continuation, and generation is deterministic.
#include <gtest/gtest.h>

#include <algorithm>

#include "hymba/generate.h"
#include "test_util.h"

namespace hymba {
namespace {

const std::filesystem::path kModel = std::filesystem::path(HYMBA_TEST_DATA) / ".." / ".." / "models" / "hymba-kjv-tiny";

TEST(ShippedModel, GreedyMatchesTheReferenceFor32Tokens) {
  const Model model = Model::Load(kModel);
  const nlohmann::json reference = test::ReadJson(kModel / "reference_greedy.json");
  const std::vector<int32_t> prompt = reference["prompt_ids"];
  const std::vector<int32_t> expected = reference["greedy_ids"];
  ASSERT_EQ(expected.size(), 32u);
  Sequence sequence = model.NewSequence();
  std::vector<float> logits = model.Append(sequence, prompt);
  std::vector<int32_t> greedy;
  while (greedy.size() < expected.size()) {
    greedy.push_back(static_cast<int32_t>(std::max_element(logits.begin(), logits.end()) - logits.begin()));
    logits = model.Append(sequence, std::span(&greedy.back(), 1));
  }
  EXPECT_EQ(greedy, expected);
}

TEST(ShippedModel, TokenizerRoundTripsAndGenerationIsDeterministic) {
  const Model model = Model::Load(kModel);
  const Tokenizer tokenizer = Tokenizer::Load(kModel);
  const nlohmann::json reference = test::ReadJson(kModel / "reference_greedy.json");
  const std::vector<int32_t> prompt =
      tokenizer.Encode(reference["prompt"].get<std::string>(), {.add_bos = tokenizer.add_bos_token()});
  EXPECT_EQ(prompt, reference["prompt_ids"].get<std::vector<int32_t>>());
  GenerationOptions options;
  options.max_tokens = 24;
  options.sampling.seed = 7;
  Sequence a = model.NewSequence(), b = model.NewSequence();
  EXPECT_EQ(Generate(model, tokenizer, a, prompt, options).text, Generate(model, tokenizer, b, prompt, options).text);
}

}  // namespace
}  // namespace hymba
