// `hymba bench` on a fixture: the llama-bench-shaped results with their
// yardsticks, both output formats, and clear errors for bad flags.
#include <gtest/gtest.h>

#include <nlohmann/json.hpp>

#include "hymba/bench.h"
#include "hymba/config.h"
#include "hymba/info.h"
#include "test_util.h"

namespace hymba {
namespace {

using test::RunCli;

const std::string kFixture = test::FixtureDir("swa_meta_bf16").string();

TEST(Bench, JsonHasEveryTestWithItsYardstick) {
  const test::CommandResult result =
      RunCli({"bench", "-m", kFixture, "-p", "8,16", "-n", "4", "-d", "0,3", "-t", "1,2", "-r", "2", "-o", "json"});
  ASSERT_EQ(result.exit_code, 0) << result.err;
  const nlohmann::json report = nlohmann::json::parse(result.out);
  EXPECT_EQ(report["type"], "BF16");
  EXPECT_GT(report["bytes_per_token"].get<double>(), 0);
  EXPECT_GT(report["matmul_flops_per_token"].get<double>(), 0);
  const auto& results = report["results"];
  ASSERT_EQ(results.size(), 2u * 2u * 3u);  // threads x depths x (pp8, pp16, tg4)
  const Config config = LoadConfig(std::filesystem::path(kFixture) / "config.json");
  const CacheLayout cache = DescribeModel(config, false).engine;
  std::vector<std::string> tests;
  for (const auto& r : results) {
    tests.push_back(r["test"]);
    ASSERT_EQ(r["samples_ts"].size(), 2u);
    EXPECT_GT(r["avg_ts"].get<double>(), 0);
    EXPECT_GT(r["yardstick_ts"].get<double>(), 0);
    EXPECT_NEAR(r["of_yardstick"].get<double>(), r["avg_ts"].get<double>() / r["yardstick_ts"].get<double>(), 1e-9);
    const bool prompt = r["test"].get<std::string>().starts_with("pp");
    EXPECT_TRUE(r.contains(prompt ? "sgemm_gflops" : "read_bandwidth_gbps")) << r.dump();
    // tg: the K/V its 4 steps read on average, from the cache's accounting.
    int64_t kv_read = 0;
    if (!prompt) {
      for (int t = 0; t < 4; ++t) kv_read += cache.DecodeReadBytes(config, r["depth"].get<int>() + t);
      kv_read /= 4;
      EXPECT_GT(kv_read, 0);
    }
    EXPECT_EQ(r["kv_read_bytes_per_token"].get<int64_t>(), kv_read) << r.dump();
  }
  EXPECT_EQ(tests[0], "pp8");
  EXPECT_EQ(tests[2], "tg4");
  EXPECT_EQ(tests[3], "pp8 @ d3");
  EXPECT_EQ(results[6]["threads"], 2);
}

TEST(Bench, MarkdownTable) {
  const test::CommandResult result = RunCli({"bench", "-m", kFixture, "-p", "8", "-n", "2", "-t", "1", "-r", "1"});
  ASSERT_EQ(result.exit_code, 0) << result.err;
  EXPECT_NE(result.out.find("| model | size | params | type | threads | test | t/s |"), std::string::npos);
  EXPECT_NE(result.out.find("| pp8 |"), std::string::npos) << result.out;
  EXPECT_NE(result.out.find("| tg2 |"), std::string::npos) << result.out;
  EXPECT_NE(result.out.find("sgemm"), std::string::npos);
  EXPECT_NE(result.out.find("GB/s"), std::string::npos);
  EXPECT_NE(result.out.find("K/V a tg step also reads (the cache, outside the yardstick): tg2 "), std::string::npos)
      << result.out;
}

TEST(Bench, BadFlags) {
  for (const std::vector<std::string>& args :
       {std::vector<std::string>{"bench", "-m", kFixture, "-r", "0"}, {"bench", "-m", kFixture, "-o", "xml"},
        {"bench", "-m", kFixture, "-p", "-4"}, {"bench", "-m", kFixture, "-t", "x"},
        {"bench", "-m", "/nonexistent/model"}}) {
    const test::CommandResult result = RunCli(args);
    EXPECT_NE(result.exit_code, 0) << result.out;
    EXPECT_LT(result.exit_code, 128) << result.err;
    EXPECT_FALSE(result.err.empty());
  }
}

TEST(BenchYardsticks, ReadBandwidthAndSgemmArePlausible) {
  const double bandwidth = MeasureReadBandwidth(1, size_t{64} << 20, 2);
  EXPECT_GT(bandwidth, 0.5);    // GB/s: any machine that runs this
  EXPECT_LT(bandwidth, 5000.0);
  const MatrixShape shapes[] = {{64, 48, 2}, {16, 64, 1}};
  const double gflops = MeasureSgemm(shapes, 32, 1, 2);
  EXPECT_GT(gflops, 0.1);
  EXPECT_LT(gflops, 100000.0);
}

}  // namespace
}  // namespace hymba
