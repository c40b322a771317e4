// The sum kernel on every SIMD target against a double-precision loop.
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

}  // namespace
}  // namespace hymba
