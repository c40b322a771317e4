#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>

#include <nlohmann/json.hpp>

#include "hymba/config.h"
#include "hymba/error.h"
#include "io/text_file.h"
#include "model/gguf_model.h"
#include "test_util.h"

namespace hymba {
namespace {

using nlohmann::json;

json RealConfig() { return test::ReadJson(test::DataDir() / "hymba-1.5b" / "config.json"); }

Config Parse(const json& config) { return ParseConfig(config.dump(), "config.json"); }

// Expects parsing to fail with a message that contains every fragment.
void ExpectRefused(const json& config, const std::vector<std::string>& fragments) {
  try {
    Parse(config);
    ADD_FAILURE() << "accepted " << config.dump();
  } catch (const Error& e) {
    for (const std::string& fragment : fragments) EXPECT_NE(std::string(e.what()).find(fragment), std::string::npos) << e.what();
  }
}

TEST(Config, RealHymbaConfigDerivesTheSpecSizes) {
  const Config c = Parse(RealConfig());
  EXPECT_EQ(c.d_inner, 3200);
  EXPECT_EQ(c.head_dim_qk, 64);
  EXPECT_EQ(c.head_dim_v, 128);
  EXPECT_EQ(c.k_width, 320);
  EXPECT_EQ(c.v_width, 640);
  EXPECT_EQ(c.mamba_dt_rank, 100);
  EXPECT_EQ(c.InProjRows(0), 8960);
  EXPECT_EQ(c.InProjRows(2), 8000);
  EXPECT_EQ(c.rope_type, RopeType::kNtk);
  EXPECT_EQ(c.sliding_window, 1024);
  EXPECT_TRUE(c.tie_word_embeddings);
  int owners = 0;
  for (int layer = 0; layer < c.num_hidden_layers; ++layer) owners += c.IsOwner(layer);
  EXPECT_EQ(owners, 17);
  for (int layer : {0, 15, 31}) EXPECT_TRUE(c.layers[layer].global_attention) << layer;
  EXPECT_FALSE(c.layers[1].global_attention);
  EXPECT_EQ(c.layers[17].kv_source, 16);
  EXPECT_EQ(c.layers[18].kv_source, 16);
  EXPECT_EQ(c.layers[30].kv_source, 29);
  EXPECT_FALSE(c.KeepsFullHistory(1));
  EXPECT_TRUE(c.KeepsFullHistory(15));
}

TEST(Config, KvReuseEveryILayerMakesBlocksOfConsumers) {
  json config = RealConfig();
  config["kv_reuse_group"] = nullptr;
  config["kv_reuse_every_i_layer"] = 3;
  const Config c = Parse(config);
  EXPECT_EQ(c.layers[0].kv_source, 0);
  EXPECT_EQ(c.layers[2].kv_source, 0);
  EXPECT_EQ(c.layers[3].kv_source, 3);
  EXPECT_EQ(c.layers[31].kv_source, 30);
}

TEST(Config, GlobalConsumerMakesSlidingProducerKeepFullHistory) {
  json config = RealConfig();
  config["global_attn_idx"] = {0, 2};
  const Config c = Parse(config);
  EXPECT_TRUE(c.KeepsFullHistory(1));  // layer 2 is global and reads layer 1 (E6)
}

TEST(Config, HfDefaultsApplyToAbsentFields) {
  const json minimal = {{"vocab_size", 10}, {"hidden_size", 32}, {"intermediate_size", 0},
                        {"num_hidden_layers", 2}, {"num_attention_heads", 4}};
  const Config c = Parse(minimal);
  EXPECT_EQ(c.num_key_value_heads, 4);
  EXPECT_EQ(c.mamba_dt_rank, 2);  // ceil(32 / 16)
  EXPECT_EQ(c.num_memory_tokens, 0);
  EXPECT_FALSE(c.rope);
  EXPECT_FALSE(c.HasSlidingWindow());
  EXPECT_FALSE(c.tie_word_embeddings);
  EXPECT_EQ(c.mamba_d_conv, 4);
}

TEST(Config, EosMayBeAList) {
  json config = RealConfig();
  config["eos_token_id"] = {2, 32000};
  EXPECT_EQ(Parse(config).eos_token_ids, (std::vector<int64_t>{2, 32000}));
}

// generation_config.json's eos_token_id (the one the engine stops at) is
// checked like config.json's.
TEST(Config, GenerationConfigEosIsChecked) {
  Config config = Parse(RealConfig());
  ApplyGenerationConfig(config, R"({"eos_token_id": [2, 7]})", "generation_config.json");
  EXPECT_EQ(config.eos_token_ids, (std::vector<int64_t>{2, 7}));
  ApplyGenerationConfig(config, R"({"temperature": 0.5})", "generation_config.json");  // no eos: unchanged
  EXPECT_EQ(config.eos_token_ids, (std::vector<int64_t>{2, 7}));
  for (const char* bad : {R"({"eos_token_id": []})", R"({"eos_token_id": -3})", R"({"eos_token_id": [2, 40000]})",
                          R"({"eos_token_id": "2"})"}) {
    try {
      ApplyGenerationConfig(config, bad, "generation_config.json");
      ADD_FAILURE() << "accepted " << bad;
    } catch (const Error& error) {
      EXPECT_NE(std::string(error.what()).find("generation_config.json: eos_token_id"), std::string::npos) << error.what();
    }
  }
}

struct BadValue {
  std::string field;
  json value;
  std::vector<std::string> message;
};

void PrintTo(const BadValue& bad, std::ostream* os) { *os << bad.field << " = " << bad.value.dump(); }

class ConfigRefusal : public ::testing::TestWithParam<BadValue> {};

TEST_P(ConfigRefusal, NamesFieldAndValue) {
  json config = RealConfig();
  if (GetParam().value.is_discarded()) {
    config.erase(GetParam().field);
  } else {
    config[GetParam().field] = GetParam().value;
  }
  ExpectRefused(config, GetParam().message);
}

INSTANTIATE_TEST_SUITE_P(
    UnsupportedOrInvalid, ConfigRefusal,
    ::testing::Values(
        BadValue{"hidden_size", json::value_t::discarded, {"hidden_size", "missing"}},
        BadValue{"vocab_size", "many", {"vocab_size", "integer", "many"}},
        BadValue{"num_hidden_layers", 0, {"num_hidden_layers", "positive"}},
        BadValue{"num_key_value_heads", 4, {"num_key_value_heads", "divide"}},
        BadValue{"memory_tokens_interspersed_every", 64, {"memory_tokens_interspersed_every", "64"}},
        BadValue{"num_experts", 8, {"num_experts", "8"}},
        BadValue{"rope_type", "dynamic_ntk", {"rope_type", "dynamic_ntk"}},
        BadValue{"attn_hidden_size", 800, {"attn_hidden_size", "800"}},
        BadValue{"kq_head_dim", 32, {"kq_head_dim", "32"}},
        BadValue{"kq_norm", "perhead-rms", {"kq_norm", "perhead-rms"}},
        BadValue{"mlp_hidden_act", "gelu", {"mlp_hidden_act", "gelu"}},
        BadValue{"hidden_act", "relu", {"hidden_act", "relu"}},
        BadValue{"layer_type", json::array({"h", "m"}), {"layer_type", "\"m\""}},
        BadValue{"global_attn_idx", json::array({0, 32}), {"global_attn_idx", "32"}},
        BadValue{"global_attn_idx", json::value_t::discarded, {"global_attn_idx", "missing"}},
        BadValue{"kv_reuse_group", json::array({json::array({2, 1})}), {"kv_reuse_group", "after its producer"}},
        BadValue{"kv_reuse_group", json::array({json::array({1, 2}), json::array({2, 3})}), {"kv_reuse_group", "more than once"}},
        BadValue{"sliding_window", -5, {"sliding_window", "-5"}},
        BadValue{"mamba_dt_rank", "big", {"mamba_dt_rank", "big"}},
        BadValue{"mamba_expand", 0, {"mamba_expand"}},
        BadValue{"orig_max_position_embeddings", json::value_t::discarded, {"orig_max_position_embeddings", "missing"}},
        BadValue{"model_type", "llama", {"model_type", "llama"}},
        BadValue{"rms_norm_eps", 0, {"rms_norm_eps"}},
        BadValue{"tie_word_embeddings", "yes", {"tie_word_embeddings", "true or false"}},
        // Counts of -1 and sizes no model has: refused before anything is derived from them.
        BadValue{"vocab_size", -1, {"vocab_size", "positive", "-1"}},
        BadValue{"num_hidden_layers", -1, {"num_hidden_layers", "positive", "-1"}},
        BadValue{"num_hidden_layers", 1 << 20, {"num_hidden_layers", "too large", "1048576"}},
        BadValue{"vocab_size", int64_t{1} << 40, {"vocab_size", "too large", "1099511627776"}},
        BadValue{"hidden_size", int64_t{1} << 40, {"hidden_size", "too large"}},
        BadValue{"intermediate_size", int64_t{1} << 40, {"intermediate_size", "too large"}},
        BadValue{"num_attention_heads", int64_t{1} << 40, {"num_attention_heads", "too large"}},
        BadValue{"mamba_d_state", int64_t{1} << 40, {"mamba_d_state", "too large"}},
        BadValue{"mamba_d_conv", int64_t{1} << 40, {"mamba_d_conv", "too large"}},
        BadValue{"mamba_dt_rank", int64_t{1} << 40, {"mamba_dt_rank", "too large"}},
        BadValue{"mamba_expand", 1e15, {"mamba_expand"}},
        BadValue{"num_memory_tokens", int64_t{1} << 40, {"num_memory_tokens", "too large"}},
        BadValue{"max_position_embeddings", int64_t{1} << 40, {"max_position_embeddings", "too large"}},
        BadValue{"sliding_window", INT64_MAX, {"sliding_window", "too large", "9223372036854775807"}},
        BadValue{"kv_reuse_every_i_layer", int64_t{1} << 40, {"kv_reuse_every_i_layer", "too large"}},
        BadValue{"vocab_size", 1e300, {"vocab_size", "integer"}},
        BadValue{"eos_token_id", json::array(), {"eos_token_id", "empty list"}},
        BadValue{"max_position_embeddings", 1024, {"max_position_embeddings", "1024", "half of orig_max_position_embeddings (2048)"}},
        BadValue{"eos_token_id", -1, {"eos_token_id", "-1", "outside the vocabulary"}},
        BadValue{"eos_token_id", json::array({2, 32001}), {"eos_token_id", "32001", "outside the vocabulary"}}),
    [](const auto& bad) { return bad.param.field + "_" + std::to_string(bad.index); });

TEST(Config, MalformedJsonIsReported) {
  try {
    ParseConfig("{\"vocab_size\": 10,", "broken/config.json");
    FAIL();
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("broken/config.json: malformed JSON"), std::string::npos) << e.what();
  }
  EXPECT_THROW(ParseConfig("[1, 2]", "config.json"), Error);
}

TEST(Config, MissingFileIsReported) {
  EXPECT_THROW(LoadConfig("/nonexistent/config.json"), Error);
}

// Any negative kv_reuse_every_i_layer means no reuse, however large.
TEST(Config, NegativeReuseEveryMeansNoReuse) {
  json config = RealConfig();
  config.erase("kv_reuse_group");
  config["kv_reuse_every_i_layer"] = -4294967294LL;  // 2 if truncated to 32 bits
  const Config c = Parse(config);
  for (int layer = 0; layer < c.num_hidden_layers; ++layer) EXPECT_EQ(c.layers[layer].kv_source, layer);
}

TEST(Config, DeepNestingIsRefusedWhileParsing) {
  json config = RealConfig();
  const std::string text = config.dump();
  const std::string deep = text.substr(0, text.size() - 1) + R"(, "extra": )" + std::string(1000, '[') +
                           std::string(1000, ']') + "}";
  test::ExpectError([&] { ParseConfig(deep, "deep/config.json"); }, {"deep/config.json", "nested deeper than 64"});
}

// A config.json of gigabytes is refused from its size, before it is read.
TEST(Config, OversizedFileIsRefusedUnread) {
  test::TempDir dir;
  const std::filesystem::path path = dir / "config.json";
  std::ofstream{path}.close();
  std::filesystem::resize_file(path, kMaxSmallFileBytes + 1);  // sparse: costs no disk
  test::ExpectError([&] { LoadConfig(path); }, {path.string(), "too large", std::to_string(kMaxSmallFileBytes)});
}

// Truncated at every byte, the real config is refused with its name, never
// accepted half-read or crashed on.
TEST(Config, TruncatedAtEveryByteIsRefused) {
  const std::string text = RealConfig().dump(2);
  for (size_t length = 0; length < text.size(); ++length) {
    EXPECT_THROW(ParseConfig(text.substr(0, length), "cut/config.json"), Error) << length;
  }
}

}  // namespace
}  // namespace hymba
