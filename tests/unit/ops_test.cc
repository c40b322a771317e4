// Each kernel against a plain double-precision loop.
#include "kernels/ops.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <bit>
#include <cmath>
#include <cstring>
#include <limits>
#include <mutex>
#include <random>
#include <vector>

#include "kernels/activations.h"
#include "simd_targets.h"

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

TEST(ThreadPool, ClaimsShrinkButNeverBelowTheGrain) {
  ThreadPool pool(2);
  for (size_t grain : {1, 3, 40}) {
    const size_t count = 1000;
    std::vector<int> hits(count, 0);
    std::mutex mutex;
    std::vector<std::pair<size_t, size_t>> ranges;
    pool.ParallelFor(
        count,
        [&](size_t begin, size_t end) {
          for (size_t i = begin; i < end; ++i) ++hits[i];
          std::lock_guard lock(mutex);
          ranges.emplace_back(begin, end);
        },
        grain);
    for (size_t i = 0; i < count; ++i) ASSERT_EQ(hits[i], 1) << "grain " << grain << " index " << i;
    std::sort(ranges.begin(), ranges.end());
    EXPECT_EQ(ranges.front().second - ranges.front().first, std::max<size_t>(grain, count / 4));  // half of one thread's share
    for (size_t r = 0; r + 1 < ranges.size(); ++r) {
      const size_t length = ranges[r].second - ranges[r].first;
      EXPECT_GE(length, grain) << "grain " << grain;
      EXPECT_GE(length, ranges[r + 1].second - ranges[r + 1].first) << "claims only shrink; grain " << grain;
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
  std::vector<float> cos(2), sin(2);
  RotaryAngles(inv_freq, position, cos.data(), sin.data());
  ApplyRope(head.data(), cos.data(), sin.data(), 2);
  for (size_t i = 0; i < 2; ++i) {
    const double angle = inv_freq[i] * position;
    const double a = 1.0 + i, b = 3.0 + i;
    EXPECT_NEAR(head[i], a * std::cos(angle) - b * std::sin(angle), 1e-6);
    EXPECT_NEAR(head[i + 2], b * std::cos(angle) + a * std::sin(angle), 1e-6);
  }
}

TEST(Rope, PositionZeroIsIdentity) {
  std::vector<float> head = {1.0f, 2.0f, 3.0f, 4.0f}, cos(2), sin(2);
  RotaryAngles(std::vector<float>{0.3f, 0.7f}, 0, cos.data(), sin.data());
  ApplyRope(head.data(), cos.data(), sin.data(), 2);
  EXPECT_EQ(head, (std::vector<float>{1.0f, 2.0f, 3.0f, 4.0f}));
}

TEST(Activations, SiluMatchesDoubleOnEveryTargetAndEveryPosition) {
  // Finite values far past exp's range on both sides, zeros, and lengths
  // that leave vector tails and reach the pool.
  std::vector<float> special = {-1000.0f, -178.0f, -88.5f, -30.0f, -3.0f, -0.5f, -0.0f, 0.0f,
                                0.5f,     3.0f,    19.9f,  20.1f,  40.0f, 105.0f, 1000.0f};
  std::mt19937 rng(3);
  std::normal_distribution<float> normal(0.0f, 4.0f);
  ThreadPool pool(2);
  test::ForEachSimdTarget([&](int64_t) {
    for (size_t n : {size_t{1}, size_t{15}, size_t{17}, size_t{100003}}) {
      std::vector<float> x(n), gate(n);
      for (size_t i = 0; i < n; ++i) {
        x[i] = i < special.size() ? special[i] : normal(rng);
        gate[i] = special[(i + 3) % special.size()] + normal(rng);
      }
      std::vector<float> silu = x, gated = x;
      SiluInPlace(silu.data(), n, pool);
      MultiplyBySilu(gate.data(), gated.data(), n, pool);
      for (size_t i = 0; i < n; ++i) {
        const double v = x[i], g = gate[i];
        const double expected_silu = v / (1 + std::exp(-v)), expected_gated = v * (g / (1 + std::exp(-g)));
        ASSERT_NEAR(silu[i], expected_silu, 1e-6 * (1 + std::fabs(expected_silu))) << "x " << v;
        ASSERT_NEAR(gated[i], expected_gated, 1e-6 * (1 + std::fabs(expected_gated))) << "x " << v << " gate " << g;
      }
      // The same value gets the same bits in a vector's lanes and in a tail.
      for (size_t i : {size_t{0}, n / 2, n - 1}) {
        float alone = x[i];
        SiluInPlace(&alone, 1, pool);
        ASSERT_EQ(std::bit_cast<uint32_t>(alone), std::bit_cast<uint32_t>(silu[i])) << "x " << x[i];
      }
    }
    std::vector<float> nan = {std::numeric_limits<float>::quiet_NaN()};
    SiluInPlace(nan.data(), 1, pool);
    EXPECT_TRUE(std::isnan(nan[0]));
  });
}

}  // namespace
}  // namespace hymba
