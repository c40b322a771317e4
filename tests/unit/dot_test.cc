// The f32 vector kernels on every SIMD target against double-precision loops.
#include "kernels/dot.h"

#include <gtest/gtest.h>

#include <cmath>
#include <random>
#include <vector>

#include "simd_targets.h"

namespace hymba {
namespace {

TEST(VectorKernels, MatchDoubleLoopsOnEveryTarget) {
  test::ForEachSimdTarget([&](int64_t) {
    std::mt19937 rng(9);
    std::normal_distribution<float> normal(0.0f, 1.0f);
    for (size_t n : {0, 1, 3, 15, 16, 17, 64, 65, 200}) {
      std::vector<float> a(n), b(n);
      for (float& v : a) v = normal(rng);
      for (float& v : b) v = normal(rng);
      double dot = 0, sum = 0, magnitude = 0;
      for (size_t i = 0; i < n; ++i) {
        dot += static_cast<double>(a[i]) * b[i];
        sum += a[i];
        magnitude += std::fabs(a[i]) * (1 + std::fabs(b[i]));
      }
      EXPECT_NEAR(Dot(a.data(), b.data(), n), dot, 1e-6 * (1 + magnitude)) << n;
      EXPECT_NEAR(Sum(a.data(), n), sum, 1e-6 * (1 + magnitude)) << n;
      std::vector<float> y = b;
      y.push_back(555.0f);  // guard
      AddScaled(0.75f, a.data(), y.data(), n);
      for (size_t i = 0; i < n; ++i) ASSERT_NEAR(y[i], b[i] + 0.75 * a[i], 1e-6 * (1 + std::fabs(y[i])));
      EXPECT_EQ(y.back(), 555.0f);
    }
  });
}

}  // namespace
}  // namespace hymba
