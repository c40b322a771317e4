// The accounting of `hymba info` against spec sections 2.3 and 7.1.
#include "hymba/info.h"

#include <gtest/gtest.h>

#include "test_util.h"

namespace hymba {
namespace {

const Config& RealConfig() {
  static const Config config = LoadConfig(test::DataDir() / "hymba-1.5b" / "config.json");
  return config;
}

int64_t Group(const ModelReport& report, const std::string& name) {
  for (const ParameterGroup& group : report.parameters) {
    if (group.name == name) return group.count;
  }
  ADD_FAILURE() << "no group " << name;
  return -1;
}

TEST(Info, ParameterCountOfHymba15B) {
  const ModelReport report = DescribeModel(RealConfig(), false);
  EXPECT_EQ(report.total_parameters, 1'522'797'824);
  EXPECT_EQ(Group(report, "embed_tokens (= lm_head)"), 51'201'600);
  EXPECT_EQ(Group(report, "in_proj"), 435'712'000);
  EXPECT_EQ(Group(report, "  attention K,V rows"), 26'112'000);
  EXPECT_EQ(Group(report, "out_proj"), 163'840'000);
  EXPECT_EQ(Group(report, "x_proj"), 13'516'800);
  EXPECT_EQ(Group(report, "dt_proj w + b"), 10'342'400);
  EXPECT_EQ(Group(report, "dt/B/C norms"), 4'224);
  EXPECT_EQ(Group(report, "MLP"), 845'414'400);
  EXPECT_EQ(DescribeModel(RealConfig(), true).total_parameters, 1'522'797'824 + 51'201'600);
}

TEST(Info, OfficialCacheFiguresOfSection71) {
  const Config& c = RealConfig();
  const CacheLayout& hf = DescribeModel(c, false).official;
  EXPECT_EQ(hf.kv_bytes_per_token_per_owner, 1'920);
  EXPECT_EQ(hf.growing_bytes_per_token, 5'760);
  EXPECT_EQ(hf.filling_bytes_per_token, 32'640);
  EXPECT_EQ(hf.meta_kv_bytes, 4'177'920);
  EXPECT_EQ(hf.window_cap_bytes, 30'965'760);
  EXPECT_EQ(hf.ssm_state_bytes, 3'276'800);
  EXPECT_EQ(hf.conv_state_bytes, 819'200);
  // The "Hymba A / Hymba B" columns of the 7.1 table.
  EXPECT_EQ(hf.BytesAt(c, 1'024, true), 41'697'280);
  EXPECT_EQ(hf.BytesAt(c, 1'024, false), 37'519'360);
  EXPECT_EQ(hf.BytesAt(c, 8'192, true), 82'984'960);
  EXPECT_EQ(hf.BytesAt(c, 8'192, false), 78'807'040);
  EXPECT_NEAR(hf.BytesAt(c, 32'768, true) / 1e6, 224.5, 0.05);
  EXPECT_EQ(DescribeModel(c, false).llama32_3b_bytes_per_token, 114'688);
}

TEST(Info, EngineLayoutKeepsWindowPlusOneKeysInF32) {
  const Config& c = RealConfig();
  const CacheLayout& engine = DescribeModel(c, false).engine;
  EXPECT_EQ(engine.window_entries, 1'025);
  EXPECT_EQ(engine.kv_bytes_per_token_per_owner, 3'840);
  EXPECT_EQ(engine.window_cap_bytes, 14 * (128 + 1'025) * 3'840);
  EXPECT_EQ(engine.ssm_state_bytes, 6'553'600);
  EXPECT_EQ(engine.conv_state_bytes, 32 * 3'200 * 3 * 4);
}

// Every layer reads the positions it sees from its owner's cache: a global
// layer all of them, a sliding-window layer the meta tokens and its newest
// window + 1 (E3; the official decode one fewer). Consumers read again what
// their owner read.
TEST(Info, DecodeStepReadsWhatEachLayerSees) {
  const Config& c = RealConfig();
  const CacheLayout& engine = DescribeModel(c, false).engine;
  EXPECT_EQ(engine.DecodeReadBytes(c, 0), 32 * 129 * 3'840);
  EXPECT_EQ(engine.DecodeReadBytes(c, 1'024), 32 * 1'153 * 3'840);  // the windows just full
  EXPECT_EQ(engine.DecodeReadBytes(c, 1'025), (3 * 1'154 + 29 * 1'153) * 3'840);
  EXPECT_EQ(engine.DecodeReadBytes(c, 4'095), 46'109 * 3'840);  // 177 MB: the README's step at depth 4096
  const CacheLayout& hf = DescribeModel(c, false).official;
  EXPECT_EQ(hf.DecodeReadBytes(c, 4'095), (3 * 4'224 + 29 * 1'152) * 1'920);
  EXPECT_EQ(DescribeModel(c, false, CacheType::kQ8).engine.DecodeReadBytes(c, 4'095), 46'109 * (960 + 40));

  Config global_only = c;
  global_only.sliding_window = -1;
  EXPECT_EQ(DescribeModel(global_only, false).engine.DecodeReadBytes(global_only, 4'095), 32 * 4'224 * 3'840);
}

TEST(Info, F16CacheHalvesOnlyTheKeysAndValues) {
  const Config& c = RealConfig();
  const CacheLayout& f32 = DescribeModel(c, false).engine;
  const CacheLayout& f16 = DescribeModel(c, false, CacheType::kF16).engine;
  EXPECT_EQ(f16.kv_bytes_per_token_per_owner, 1'920);
  EXPECT_EQ(f16.window_cap_bytes, f32.window_cap_bytes / 2);
  EXPECT_EQ(f16.meta_kv_bytes, f32.meta_kv_bytes / 2);
  EXPECT_EQ(f16.ssm_state_bytes, f32.ssm_state_bytes);
  EXPECT_EQ(f16.conv_state_bytes, f32.conv_state_bytes);
}

// q8: one byte per value, and each K/V head's key row and value row of a
// position carry a 4-byte scale: (320 + 640) x 1 + 2 x 5 x 4 bytes.
TEST(Info, Q8CacheStoresBytesAndAScalePerRow) {
  const Config& c = RealConfig();
  const CacheLayout& f32 = DescribeModel(c, false).engine;
  const CacheLayout& q8 = DescribeModel(c, false, CacheType::kQ8).engine;
  EXPECT_EQ(q8.name, "hymba.cpp (q8 K/V)");
  EXPECT_EQ(q8.kv_bytes_per_token_per_owner, 1'000);
  EXPECT_EQ(q8.window_cap_bytes, f32.window_cap_bytes / 3'840 * 1'000);
  EXPECT_EQ(q8.ssm_state_bytes, f32.ssm_state_bytes);
}

TEST(Info, GlobalReaderMakesItsProducerGrow) {
  Config c = RealConfig();
  c.layers[2].global_attention = true;  // layer 2 reads layer 1
  const CacheLayout& hf = DescribeModel(c, false).official;
  EXPECT_EQ(hf.growing_bytes_per_token, 4 * 1'920);
  EXPECT_EQ(hf.window_cap_bytes, 13 * (128 + 1'024) * 1'920);
}

}  // namespace
}  // namespace hymba
