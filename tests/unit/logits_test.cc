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

NpyArray RunLogits(const std::filesystem::path& model_dir, const std::string& tokens,
                   const std::vector<std::string>& mode = {"--mode", "full"}) {
  test::TempDir out;
  std::vector<std::string> args = {"logits", "-m", model_dir.string(), "--tokens", tokens, "-o", (out / "l.npy").string()};
  args.insert(args.end(), mode.begin(), mode.end());
  const test::CommandResult result = test::RunCli(args);
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

// Every mode of E5: one pass, the cached meta prefix then chunks of several
// sizes (1 and 2 exercise the ring buffers at every offset, 7 is the default,
// 64 takes whole sequences at once), and token-by-token decode.
const std::vector<std::vector<std::string>> kModes = {
    {"--mode", "full"},
    {"--mode", "chunked"},
    {"--mode", "chunked", "--chunk", "2"},
    {"--mode", "chunked", "--chunk", "5"},
    {"--mode", "chunked", "--chunk", "64"},
    {"--mode", "incremental"}};

class FixtureLogits : public ::testing::TestWithParam<std::tuple<std::string, size_t>> {};

TEST_P(FixtureLogits, MatchReferenceWithinE9) {
  const auto& [name, mode_index] = GetParam();
  const std::filesystem::path fixture = test::FixtureDir(name);
  const NpyArray reference = ReadNpyF32(fixture / "logits.npy");
  const NpyArray computed = RunLogits(fixture, TokenArgument(fixture), kModes[mode_index]);
  const double ratio = WorstErrorRatio(computed, reference);
  EXPECT_LE(ratio, 1.0) << "worst position uses " << ratio << " of the E9 tolerance";
  std::string mode;
  for (const std::string& part : kModes[mode_index]) mode += part + " ";
  std::printf("%s %s: worst position uses %.4f of the E9 tolerance\n", name.c_str(), mode.c_str(), ratio);
}

INSTANTIATE_TEST_SUITE_P(AllFixturesAllModes, FixtureLogits,
                         ::testing::Combine(::testing::ValuesIn(test::FixtureNames()),
                                            ::testing::Range<size_t>(0, kModes.size())),
                         [](const auto& p) {
                           std::string mode;
                           for (const std::string& part : kModes[std::get<1>(p.param)]) {
                             if (part.rfind("--", 0) != 0) mode += "_" + part;
                           }
                           return std::get<0>(p.param) + mode;
                         });
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
