// Binding a checkpoint to a config: every inconsistency is an error naming the
// tensor, the shape found and the shape expected.
#include <gtest/gtest.h>

#include "hymba/error.h"
#include "hymba/model.h"
#include "test_util.h"

namespace hymba {
namespace {

constexpr char kFixture[] = "swa_meta_bf16";  // layers 1,2 and 3,4 share K/V

class WeightsTest : public ::testing::Test {
 protected:
  void SetUp() override {
    config_ = test::ReadJson(test::FixtureDir(kFixture) / "config.json");
    tensors_ = test::ReadFixtureTensors(kFixture);
  }

  void ExpectRefused(const std::vector<std::string>& fragments) {
    test::WriteModel(dir_.path(), config_, tensors_);
    try {
      Model::Load(dir_.path());
      ADD_FAILURE() << "loaded; expected an error with " << fragments.front();
    } catch (const Error& e) {
      for (const std::string& fragment : fragments) EXPECT_NE(std::string(e.what()).find(fragment), std::string::npos) << e.what();
    }
  }

  nlohmann::json config_;
  test::RawTensors tensors_;
  test::TempDir dir_;
};

TEST_F(WeightsTest, FixtureLoadsAndReportsStorage) {
  test::WriteModel(dir_.path(), config_, tensors_);
  const Model model = Model::Load(dir_.path());
  EXPECT_EQ(model.storage().tensors, static_cast<int64_t>(tensors_.size()));
  EXPECT_EQ(model.storage().bytes_by_dtype.size(), 1u);
  EXPECT_TRUE(model.storage().unused_tensors.empty());
  EXPECT_FALSE(model.storage().separate_lm_head);
}

TEST_F(WeightsTest, MissingTensor) {
  tensors_.erase("model.layers.1.mamba.x_proj.0.weight");
  ExpectRefused({"missing tensor \"model.layers.1.mamba.x_proj.0.weight\""});
}

TEST_F(WeightsTest, WrongShape) {
  test::RawTensor& norm = tensors_.at("model.final_layernorm.weight");
  norm.shape = {norm.shape[0] / 2, 2};
  ExpectRefused({"model.final_layernorm.weight", "has shape [16, 2]", "expected [32]"});
}

TEST_F(WeightsTest, InProjRowsMustMatchTheKvRole) {
  // Give consumer layer 2 the owner-sized in_proj of layer 1.
  tensors_.at("model.layers.2.mamba.in_proj.weight") = tensors_.at("model.layers.1.mamba.in_proj.weight");
  ExpectRefused({"model.layers.2.mamba.in_proj.weight", "KV-consumer layer reading layer 1"});
}

TEST_F(WeightsTest, UnsupportedDtypeOfANeededTensor) {
  tensors_.at("model.layers.0.mamba.D.0").dtype = "I16";  // same element size as BF16
  ExpectRefused({"model.layers.0.mamba.D.0", "has dtype I16"});
}

TEST_F(WeightsTest, UntiedHeadIsUsedWhenPresent) {
  config_["tie_word_embeddings"] = false;
  test::RawTensor head = tensors_.at("model.embed_tokens.weight");
  tensors_["lm_head.weight"] = head;
  test::WriteModel(dir_.path(), config_, tensors_);
  EXPECT_TRUE(Model::Load(dir_.path()).storage().separate_lm_head);
}

TEST_F(WeightsTest, HeadIsTiedWhenAbsentEvenIfConfigSaysUntied) {
  config_["tie_word_embeddings"] = false;
  test::WriteModel(dir_.path(), config_, tensors_);
  EXPECT_FALSE(Model::Load(dir_.path()).storage().separate_lm_head);
}

TEST_F(WeightsTest, UnexpectedTensorsAreReportedNotFatal) {
  tensors_["model.layers.0.mamba.something_new"] = tensors_.at("model.final_layernorm.weight");
  test::WriteModel(dir_.path(), config_, tensors_);
  EXPECT_EQ(Model::Load(dir_.path()).storage().unused_tensors,
            (std::vector<std::string>{"model.layers.0.mamba.something_new"}));
}

TEST_F(WeightsTest, TokenErrors) {
  test::WriteModel(dir_.path(), config_, tensors_);
  const Model model = Model::Load(dir_.path());
  EXPECT_THROW(model.Logits(std::vector<int32_t>{}), Error);
  EXPECT_THROW(model.Logits(std::vector<int32_t>{1, static_cast<int32_t>(config_["vocab_size"].get<int>())}), Error);
  EXPECT_THROW(model.Logits(std::vector<int32_t>{-3}), Error);
  const int max_positions = config_["max_position_embeddings"];
  const int meta = config_["num_memory_tokens"];
  EXPECT_THROW(model.Logits(std::vector<int32_t>(static_cast<size_t>(max_positions - meta + 1), 1)), Error);
}

}  // namespace
}  // namespace hymba
