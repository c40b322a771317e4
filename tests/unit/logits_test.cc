// Every fixture through `hymba logits` against the float64 reference (E9):
// per position, max |c - r| <= 1e-3 * (1 + max |r|).
#include <gtest/gtest.h>

#include <cmath>
#include <cstdio>
#include <functional>

#include "io/npy.h"
#include "test_util.h"

namespace hymba {
namespace {

std::string TokenArgument(const std::filesystem::path& fixture) {
  std::string tokens;
  for (int id : test::ReadJson(fixture / "tokens.json")) tokens += (tokens.empty() ? "" : ",") + std::to_string(id);
  return tokens;
}

NpyArray RunLogits(const std::filesystem::path& model_dir, const std::string& tokens) {
  test::TempDir out;
  const test::CommandResult result = test::RunCli({"logits", "-m", model_dir.string(), "--tokens", tokens, "-o", (out / "l.npy").string()});
  EXPECT_EQ(result.exit_code, 0) << result.err;
  return ReadNpyF32(out / "l.npy");
}

// Largest per-position error as a fraction of the E9 allowance (<= 1 passes).
double WorstErrorRatio(const NpyArray& computed, const NpyArray& reference) {
  EXPECT_EQ(computed.shape, reference.shape);
  if (computed.shape != reference.shape || reference.shape.size() != 2) return INFINITY;
  const auto rows = static_cast<size_t>(reference.shape[0]), cols = static_cast<size_t>(reference.shape[1]);
  double worst = 0;
  for (size_t r = 0; r < rows; ++r) {
    double max_ref = 0, max_diff = 0;
    for (size_t c = 0; c < cols; ++c) {
      max_ref = std::max(max_ref, std::fabs(static_cast<double>(reference.data[r * cols + c])));
      max_diff = std::max(max_diff, std::fabs(static_cast<double>(computed.data[r * cols + c]) - reference.data[r * cols + c]));
    }
    worst = std::max(worst, max_diff / (1e-3 * (1 + max_ref)));
  }
  return worst;
}

class FixtureLogits : public ::testing::TestWithParam<std::string> {};

TEST_P(FixtureLogits, MatchReferenceWithinE9) {
  const std::filesystem::path fixture = test::FixtureDir(GetParam());
  const NpyArray reference = ReadNpyF32(fixture / "logits.npy");
  const NpyArray computed = RunLogits(fixture, TokenArgument(fixture));
  const double ratio = WorstErrorRatio(computed, reference);
  EXPECT_LE(ratio, 1.0) << "worst position uses " << ratio << " of the E9 tolerance";
  std::printf("%s: worst position uses %.4f of the E9 tolerance\n", GetParam().c_str(), ratio);
}

INSTANTIATE_TEST_SUITE_P(AllFixtures, FixtureLogits, ::testing::ValuesIn(test::FixtureNames()),
                         [](const auto& fixture) { return fixture.param; });
GTEST_ALLOW_UNINSTANTIATED_PARAMETERIZED_TEST(FixtureLogits);  // reported by the next test instead

TEST(FixtureLogitsCoverage, AtLeastFiveConfigurations) { EXPECT_GE(test::FixtureNames().size(), 5u); }

// The comparison must be able to fail: a model that differs from the reference
// in one detail of the semantics (a window one key wider, another RoPE base)
// has to land outside the tolerance.
void ExpectMutationDetected(const std::string& fixture_name, const std::function<void(nlohmann::json&)>& mutate) {
  const std::filesystem::path fixture = test::FixtureDir(fixture_name);
  test::TempDir dir;
  nlohmann::json config = test::ReadJson(fixture / "config.json");
  mutate(config);
  test::WriteModel(dir.path(), config, test::ReadFixtureTensors(fixture_name));
  const double ratio = WorstErrorRatio(RunLogits(dir.path(), TokenArgument(fixture)), ReadNpyF32(fixture / "logits.npy"));
  EXPECT_GT(ratio, 10.0) << "mutation went unnoticed";
}

TEST(FixtureLogitsMutation, SlidingWindowOneWider) {
  ExpectMutationDetected("swa_meta_bf16", [](nlohmann::json& c) { c["sliding_window"] = c["sliding_window"].get<int>() + 1; });
}

TEST(FixtureLogitsMutation, GlobalLayersMadeSliding) {
  ExpectMutationDetected("sharded_mixed", [](nlohmann::json& c) { c["global_attn_idx"] = nlohmann::json::array(); });
}

TEST(FixtureLogitsMutation, RopeBase) {
  ExpectMutationDetected("groups3_f32_untied", [](nlohmann::json& c) { c["rope_theta"] = 10000.0; });
}

TEST(FixtureLogitsMutation, NtkScaling) {
  ExpectMutationDetected("real_tokenizer_bf16", [](nlohmann::json& c) { c["rope_type"] = "default"; });
}

}  // namespace
}  // namespace hymba
