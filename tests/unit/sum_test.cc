// The sum kernels on every SIMD target against double-precision loops.
#include "kernels/sum.h"

#include <gtest/gtest.h>

#include <cmath>
#include <random>
#include <vector>

#include "simd_targets.h"

namespace hymba {
namespace {

TEST(Sum, MatchesDoubleLoopOnEveryTarget) {
  test::ForEachSimdTarget([&](int64_t) {
    std::mt19937 rng(9);
    std::normal_distribution<float> normal(0.0f, 1.0f);
    for (size_t n : {0, 1, 3, 15, 16, 17, 63, 64, 65, 200, 1000}) {
      std::vector<float> a(n);
      double sum = 0, magnitude = 0;
      for (float& v : a) {
        v = normal(rng);
        sum += v;
        magnitude += std::fabs(v);
      }
      EXPECT_NEAR(Sum(a.data(), n), sum, 1e-6 * (1 + magnitude)) << n;
    }
  });
}

TEST(SumOfSquares, MatchesDoubleLoopOnEveryTarget) {
  test::ForEachSimdTarget([&](int64_t) {
    std::mt19937 rng(10);
    std::normal_distribution<float> normal(0.0f, 3.0f);
    for (size_t n : {0, 1, 7, 8, 9, 31, 32, 33, 100, 1600, 3203}) {
      std::vector<float> a(n);
      double sum = 0;
      for (float& v : a) {
        v = normal(rng);
        sum += static_cast<double>(v) * v;
      }
      // Squares of floats are exact in double: only the order of the adds differs.
      EXPECT_NEAR(SumOfSquares(a.data(), n), sum, 1e-13 * (1 + sum)) << n;
    }
  });
}

}  // namespace
}  // namespace hymba
