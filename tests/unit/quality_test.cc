// `hymba perplexity` against a direct computation from Model::Logits.
#include "hymba/quality.h"

#include <gtest/gtest.h>

#include <cmath>

#include "hymba/error.h"
#include "hymba/model.h"
#include "hymba/tokenizer.h"
#include "test_util.h"

namespace hymba {
namespace {

const std::filesystem::path kShipped = test::ShippedModelDir();
const std::filesystem::path kText = std::filesystem::path(HYMBA_TEST_DATA) / "kjv_heldout.txt";

TEST(Quality, PerplexityMatchesLogitsAndSelfComparisonIsExact) {
  const QualityReport report = MeasureQuality({.model = kShipped, .text_file = kText, .context = 64, .max_chunks = 3,
                                               .base_model = kShipped, .threads = 1});
  EXPECT_EQ(report.chunks, 3);
  EXPECT_EQ(report.tokens_scored, 3 * 63);
  EXPECT_EQ(*report.mean_kl, 0.0);
  EXPECT_EQ(*report.top1_agreement, 1.0);
  EXPECT_EQ(*report.base_perplexity, report.perplexity);

  const Model model = Model::Load(kShipped, 1);
  const Tokenizer tokenizer = Tokenizer::Load(kShipped);
  const std::vector<int32_t> tokens = tokenizer.Encode(test::ReadText(kText), {});
  const auto vocab = static_cast<size_t>(model.config().vocab_size);
  double nll = 0;
  for (size_t chunk = 0; chunk < 3; ++chunk) {
    const std::vector<int32_t> ids(tokens.begin() + static_cast<ptrdiff_t>(chunk * 64),
                                   tokens.begin() + static_cast<ptrdiff_t>(chunk * 64 + 64));
    const std::vector<float> logits = model.Logits(ids);
    for (size_t j = 0; j + 1 < 64; ++j) {
      double sum = 0;
      for (size_t i = 0; i < vocab; ++i) sum += std::exp(static_cast<double>(logits[j * vocab + i]));
      nll -= logits[j * vocab + static_cast<size_t>(ids[j + 1])] - std::log(sum);
    }
  }
  EXPECT_NEAR(report.perplexity, std::exp(nll / (3 * 63)), 1e-4 * report.perplexity);
  EXPECT_GT(report.perplexity, 5.0);  // a trained model on its own held-out text
  EXPECT_LT(report.perplexity, 100.0);
}

TEST(Quality, BadRequests) {
  test::TempDir dir;
  test::WriteText(dir / "short.txt", "In the beginning");
  auto options = [&](const std::filesystem::path& file, int context) {
    QualityOptions o;
    o.model = kShipped;
    o.text_file = file;
    o.context = context;
    return o;
  };
  EXPECT_THROW(MeasureQuality(options(dir / "short.txt", 64)), Error);
  EXPECT_THROW(MeasureQuality(options(dir / "missing.txt", 64)), Error);
  EXPECT_THROW(MeasureQuality(options(kText, 1)), Error);
  const test::CommandResult cli = test::RunCli({"perplexity", "-m", kShipped.string(), "-f", (dir / "short.txt").string()});
  EXPECT_NE(cli.exit_code, 0);
  EXPECT_NE(cli.err.find("short.txt"), std::string::npos) << cli.err;
}

}  // namespace
}  // namespace hymba
