// The CLI contract: spellings later tools rely on, and a clear error with a
// non-zero exit for every kind of bad input.
#include <gtest/gtest.h>

#include "io/npy.h"
#include "test_util.h"

namespace hymba {
namespace {

using test::RunCli;

const std::string kFixture = test::FixtureDir("swa_meta_bf16").string();
const std::string kRealConfig = (test::DataDir() / "hymba-1.5b").string();

void ExpectFailure(const std::vector<std::string>& args, const std::vector<std::string>& fragments) {
  const test::CommandResult result = RunCli(args);
  EXPECT_NE(result.exit_code, 0) << result.out;
  EXPECT_LT(result.exit_code, 128) << "crashed: " << result.err;
  for (const std::string& fragment : fragments) EXPECT_NE(result.err.find(fragment), std::string::npos) << result.err;
}

TEST(Cli, LogitsWritesFloat32Npy) {
  test::TempDir dir;
  const test::CommandResult result = RunCli({"logits", "-m", kFixture, "--tokens", "5, 9,13", "-o", (dir / "o.npy").string()});
  ASSERT_EQ(result.exit_code, 0) << result.err;
  const NpyArray logits = ReadNpyF32(dir / "o.npy");
  EXPECT_EQ(logits.shape, (std::vector<int64_t>{3, 256}));
  EXPECT_NE(result.err.find("tokens/s"), std::string::npos);
}

TEST(Cli, LogitsTopNextTokens) {
  const std::string model = test::FixtureDir("real_tokenizer_bf16").string();
  const test::CommandResult result = RunCli({"logits", "-m", model, "--tokens", "15043,29892", "--top", "3"});
  ASSERT_EQ(result.exit_code, 0) << result.err;
  EXPECT_NE(result.out.find("| rank | token | probability |"), std::string::npos) << result.out;
  EXPECT_NE(result.out.find("| 3 | "), std::string::npos) << result.out;
  EXPECT_EQ(result.out.find("| 4 | "), std::string::npos) << result.out;
}

// A GGUF converted from a directory without tokenizer.model: ids only, and
// the reason on stderr, not a failure after the work is done.
TEST(Cli, LogitsTopOnAGgufWithoutTokenizer) {
  test::TempDir dir;
  const std::string gguf = (dir / "m.gguf").string();
  ASSERT_EQ(RunCli({"convert", test::FixtureDir("every_i_f16_noswa").string(), "-o", gguf}).exit_code, 0);
  const test::CommandResult result = RunCli({"logits", "-m", gguf, "--tokens", "5,6", "--top", "2"});
  ASSERT_EQ(result.exit_code, 0) << result.err;
  EXPECT_NE(result.out.find("| 2 | "), std::string::npos) << result.out;
  EXPECT_NE(result.err.find("token texts not shown"), std::string::npos) << result.err;
}

TEST(Cli, LogitsBadInput) {
  test::TempDir dir;
  const std::string out = (dir / "o.npy").string();
  ExpectFailure({"logits", "-m", "/nonexistent/model", "--tokens", "1", "-o", out}, {"/nonexistent/model", "does not exist"});
  ExpectFailure({"logits", "-m", dir.path().string(), "--tokens", "1", "-o", out}, {"missing config.json"});
  ExpectFailure({"logits", "-m", kFixture, "--tokens", "1,256", "-o", out}, {"token id 256", "vocab_size 256"});
  ExpectFailure({"logits", "-m", kFixture, "--tokens", "", "-o", out}, {"empty"});
  ExpectFailure({"logits", "-m", kFixture, "--tokens", "1,x", "-o", out}, {"\"x\" is not a token id"});
  ExpectFailure({"logits", "-m", kFixture, "--tokens", "-4", "-o", out}, {"out of range"});
  ExpectFailure({"logits", "-m", kFixture, "--tokens", "1,,2", "-o", out}, {"empty entry"});
  ExpectFailure({"logits", "-m", kFixture, "--tokens", "1", "-o", (dir / "no/such/dir/o.npy").string()}, {"o.npy"});
  ExpectFailure({"logits", "-m", kFixture, "--tokens", "1"}, {"-o OUT.npy, --top N"});
  ExpectFailure({"logits", "-m", kFixture, "--tokens", "1", "--top", "-2"}, {"--top"});
  ExpectFailure({"logits", "--tokens", "1", "-o", out}, {"--model"});
  EXPECT_FALSE(std::filesystem::exists(out));
}

TEST(Cli, FailedRunLeavesExistingOutputUntouched) {
  test::TempDir dir;
  test::WriteText(dir / "o.npy", "precious");
  ExpectFailure({"logits", "-m", kFixture, "--tokens", "99999", "-o", (dir / "o.npy").string()}, {"99999"});
  EXPECT_EQ(test::ReadText(dir / "o.npy"), "precious");
}

TEST(Cli, BrokenModelFilesAreReportedByName) {
  test::TempDir dir;
  std::filesystem::copy(kFixture, dir.path(), std::filesystem::copy_options::recursive);
  const std::string model = dir.path().string();
  const std::string weights = (dir / "model.safetensors").string();
  const std::string original = test::ReadText(weights);

  test::WriteText(weights, original.substr(0, original.size() / 2));
  ExpectFailure({"logits", "-m", model, "--tokens", "1", "-o", (dir / "o.npy").string()}, {weights, "outside"});
  test::WriteText(weights, original.substr(0, 5));
  ExpectFailure({"info", "-m", model}, {weights, "truncated"});
  test::WriteText(weights, original);

  test::WriteText(dir / "config.json", "{\"vocab_size\": ");
  ExpectFailure({"info", "-m", model}, {"config.json", "malformed JSON"});
  test::WriteText(dir / "config.json", R"({"vocab_size": 256, "hidden_size": 32, "num_hidden_layers": 6})");
  ExpectFailure({"logits", "-m", model, "--tokens", "1", "-o", (dir / "o.npy").string()}, {"intermediate_size", "missing"});
}

TEST(Cli, TokenizeAndDetokenize) {
  test::CommandResult result = RunCli({"tokenize", "-m", kRealConfig, "--text", "Hello", "--bos"});
  ASSERT_EQ(result.exit_code, 0) << result.err;
  EXPECT_EQ(result.out, "[1,15043]\n");
  result = RunCli({"tokenize", "-m", kRealConfig, "--text", "a</s>"});
  EXPECT_EQ(result.out, "[263,2]\n");
  result = RunCli({"tokenize", "-m", kRealConfig, "--text", "a</s>", "--no-special"});
  EXPECT_EQ(result.out.find(",2,"), std::string::npos);
  EXPECT_EQ(result.out.find(",2]"), std::string::npos);
  result = RunCli({"detokenize", "-m", kRealConfig, "--tokens", "1,15043,2"});
  EXPECT_EQ(result.out, "Hello\n");
  ExpectFailure({"detokenize", "-m", kRealConfig, "--tokens", "1,99999"}, {"99999"});
  ExpectFailure({"tokenize", "-m", kFixture, "--text", "x"}, {"tokenizer.model"});
}

TEST(Cli, InfoOnTheRealConfig) {
  test::CommandResult result = RunCli({"info", "-m", kRealConfig});
  ASSERT_EQ(result.exit_code, 0) << result.err;
  EXPECT_NE(result.out.find("1,522,797,824"), std::string::npos);
  EXPECT_NE(result.out.find("30,965,760"), std::string::npos);
  EXPECT_NE(result.out.find("41.70 MB"), std::string::npos);
  EXPECT_NE(result.out.find("reads K/V of layer 16"), std::string::npos);
  result = RunCli({"info", "-m", kRealConfig, "--json"});
  ASSERT_EQ(result.exit_code, 0) << result.err;
  const nlohmann::json info = nlohmann::json::parse(result.out);
  EXPECT_EQ(info["total_parameters"], 1'522'797'824);
  EXPECT_EQ(info["cache"]["official"]["meta_kv_bytes"], 4'177'920);
  EXPECT_EQ(info["layers"][18]["kv_source"], 16);
  EXPECT_TRUE(info["weights"].is_null());
}

TEST(Cli, InfoWithWeightsReportsStoredBytes) {
  const test::CommandResult result = RunCli({"info", "-m", test::FixtureDir("sharded_mixed").string(), "--json"});
  ASSERT_EQ(result.exit_code, 0) << result.err;
  const nlohmann::json info = nlohmann::json::parse(result.out);
  EXPECT_EQ(info["weights"]["parameters"], info["total_parameters"]);
  EXPECT_EQ(info["weights"]["bytes_by_dtype"].size(), 3u);
}

TEST(Cli, UsageErrors) {
  ExpectFailure({}, {});
  ExpectFailure({"frobnicate"}, {});
  ExpectFailure({"info", "-m", kRealConfig, "--bogus"}, {"--bogus"});
  ExpectFailure({"generate", "-m", kFixture, "-p", "x", "--compute-type", "bf17"}, {"--compute-type", "bf17"});
  ExpectFailure({"generate", "-m", kFixture, "-p", "x", "--cache-type", "q8_0"}, {"--cache-type", "q8_0"});
}

// `hymba logits` of three tokens on the fixture, with extra flags.
test::CommandResult FixtureLogits(std::initializer_list<std::string> flags) {
  std::vector<std::string> args = {"logits", "-m", kFixture, "--tokens", "5,9,13", "--top", "3"};
  args.insert(args.end(), flags);
  return RunCli(args);
}

// --compute-type bf16 reaches the model: bf16 weights give other logits.
TEST(Cli, ComputeTypeBf16) {
  const test::CommandResult exact = FixtureLogits({});
  const test::CommandResult bf16 = FixtureLogits({"--compute-type", "bf16"});
  ASSERT_EQ(exact.exit_code, 0) << exact.err;
  ASSERT_EQ(bf16.exit_code, 0) << bf16.err;
  EXPECT_NE(exact.out, bf16.out);
}

// --cache-type f16 and q8 reach the model: keys and values rounded give
// other logits; `info` accounts for them; another name is refused.
TEST(Cli, CacheTypes) {
  const test::CommandResult exact = FixtureLogits({});
  ASSERT_EQ(exact.exit_code, 0) << exact.err;
  std::vector<std::string> outputs = {exact.out};
  for (const std::string type : {"f16", "q8"}) {
    const test::CommandResult rounded = FixtureLogits({"--cache-type", type});
    ASSERT_EQ(rounded.exit_code, 0) << rounded.err;
    for (const std::string& other : outputs) EXPECT_NE(rounded.out, other) << type;
    outputs.push_back(rounded.out);
    const test::CommandResult info = RunCli({"info", "-m", kFixture, "--cache-type", type});
    ASSERT_EQ(info.exit_code, 0) << info.err;
    EXPECT_NE(info.out.find("hymba.cpp (" + type + " K/V)"), std::string::npos) << info.out;
  }
  const test::CommandResult bad = RunCli({"info", "-m", kFixture, "--cache-type", "q4_0"});
  EXPECT_NE(bad.exit_code, 0);
  EXPECT_NE(bad.err.find("--cache-type"), std::string::npos) << bad.err;
}

}  // namespace
}  // namespace hymba

namespace hymba {
namespace {

TEST(ServeCli, BadModelAndFlagsExitNonZeroWithTheReason) {
  test::CommandResult result = test::RunCli({"serve", "-m", "/nonexistent/model", "--port", "0"});
  EXPECT_EQ(result.exit_code, 1);
  EXPECT_NE(result.err.find("/nonexistent/model does not exist"), std::string::npos) << result.err;
  result = test::RunCli({"serve", "-m", test::ShippedModelDir().string(), "--port",
                         "0", "--parallel", "0"});
  EXPECT_EQ(result.exit_code, 1);
  EXPECT_NE(result.err.find("--parallel must be in [1, 256], got 0"), std::string::npos) << result.err;
  result = test::RunCli({"serve", "--help"});
  EXPECT_NE(result.out.find("--host TEXT=127.0.0.1"), std::string::npos) << result.out;  // loopback unless asked
  EXPECT_NE(result.out.find("off by default"), std::string::npos) << result.out;              // CORS
  result = test::RunCli({"serve", "-m", "x", "--port", "70000"});
  EXPECT_NE(result.exit_code, 0);
  EXPECT_NE(result.err.find("--port must be in [0, 65535], got 70000"), std::string::npos) << result.err;
}

}  // namespace
}  // namespace hymba
