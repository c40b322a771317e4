// Each kernel against a plain double-precision loop.
#include "kernels/ops.h"

#include <gtest/gtest.h>

#include <bit>
#include <cmath>
#include <cstring>
#include <random>
#include <vector>

namespace hymba {
namespace {

TEST(ThreadPool, CoversEveryIndexExactlyOnce) {
  for (size_t threads : {1, 2, 5}) {
    ThreadPool pool(threads);
    EXPECT_EQ(pool.size(), threads);
    for (size_t count : {0, 1, 2, 3, 7, 100}) {
      std::vector<int> hits(count, 0);
      for (int round = 0; round < 3; ++round) {
        pool.ParallelFor(count, [&](size_t begin, size_t end) {
          for (size_t i = begin; i < end; ++i) ++hits[i];
        });
      }
      for (size_t i = 0; i < count; ++i) EXPECT_EQ(hits[i], 3) << "threads " << threads << " count " << count;
    }
  }
}

TEST(RmsNorm, MatchesDoubleFormulaWithAndWithoutWeight) {
  const std::vector<float> x = {1.0f, -2.0f, 3.0f, 0.5f, -0.25f};
  const std::vector<float> w = {0.5f, 1.0f, 2.0f, -1.0f, 1.5f};
  double mean_square = 0;
  for (float v : x) mean_square += static_cast<double>(v) * v / x.size();
  const double scale = 1.0 / std::sqrt(mean_square + 1e-6);
  std::vector<float> out(x.size());
  RmsNorm(x.data(), w, x.size(), 1e-6f, out.data());
  for (size_t i = 0; i < x.size(); ++i) EXPECT_NEAR(out[i], x[i] * scale * w[i], 1e-6);
  RmsNorm(x.data(), {}, x.size(), 1e-6f, out.data());
  for (size_t i = 0; i < x.size(); ++i) EXPECT_NEAR(out[i], x[i] * scale, 1e-6);
  std::vector<float> in_place = x;  // the forward pass normalises in place
  RmsNorm(in_place.data(), w, x.size(), 1e-6f, in_place.data());
  for (size_t i = 0; i < x.size(); ++i) EXPECT_NEAR(in_place[i], x[i] * scale * w[i], 1e-6);
}

TEST(RmsNorm, EpsilonKeepsZeroVectorFinite) {
  const std::vector<float> x(8, 0.0f);
  std::vector<float> out(8, 1.0f);
  RmsNorm(x.data(), {}, x.size(), 1e-6f, out.data());
  for (float v : out) EXPECT_EQ(v, 0.0f);
}

TEST(Rope, RotatesPairsHalfADimensionApart) {
  const std::vector<float> inv_freq = {1.0f, 0.1f};
  std::vector<float> head = {1.0f, 2.0f, 3.0f, 4.0f};
  const int64_t position = 5;
  ApplyRope(head.data(), inv_freq, position);
  for (size_t i = 0; i < 2; ++i) {
    const double angle = inv_freq[i] * position;
    const double a = 1.0 + i, b = 3.0 + i;
    EXPECT_NEAR(head[i], a * std::cos(angle) - b * std::sin(angle), 1e-6);
    EXPECT_NEAR(head[i + 2], b * std::cos(angle) + a * std::sin(angle), 1e-6);
  }
}

TEST(Rope, PositionZeroIsIdentity) {
  std::vector<float> head = {1.0f, 2.0f, 3.0f, 4.0f};
  ApplyRope(head.data(), std::vector<float>{0.3f, 0.7f}, 0);
  EXPECT_EQ(head, (std::vector<float>{1.0f, 2.0f, 3.0f, 4.0f}));
}

TEST(Activations, SiluAndSoftplus) {
  for (double v : {-30.0, -3.0, -0.5, 0.0, 0.5, 3.0, 19.9, 20.1, 40.0}) {
    const auto f = static_cast<float>(v);
    EXPECT_NEAR(Silu(f), v / (1 + std::exp(-v)), 1e-6 * (1 + std::fabs(v)));
    EXPECT_NEAR(Softplus(f), v > 20 ? v : std::log1p(std::exp(v)), 1e-6 * (1 + std::fabs(v)));
  }
}

}  // namespace
}  // namespace hymba
