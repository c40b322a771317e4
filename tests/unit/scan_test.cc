// The selective scan on every SIMD target against a double-precision loop.
#include "kernels/scan.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <random>
#include <vector>

#include "simd_targets.h"

namespace hymba {
namespace {

// Every (state, channel) has its own place in d_state x d_inner elements, and
// a block's channels are consecutive in each of its rows.
TEST(SelectiveScan, BlocksHoldEveryStateOnce) {
  for (size_t d_inner : {1, 5, 16, 37, 300, 3200}) {
    for (size_t d_state : {1, 16, 17}) {
      std::vector<int> seen(d_inner * d_state, 0);
      for (size_t ch = 0; ch < d_inner; ++ch) {
        for (size_t s = 0; s < d_state; ++s) {
          const size_t at = ScanIndex(s, ch, d_inner, d_state);
          ASSERT_LT(at, seen.size()) << d_inner << " " << d_state << " " << s << " " << ch;
          ++seen[at];
          if ((ch + 1) % kScanBlock != 0 && ch + 1 < d_inner) {
            EXPECT_EQ(ScanIndex(s, ch + 1, d_inner, d_state), at + 1);
          }
        }
      }
      EXPECT_EQ(std::count(seen.begin(), seen.end(), 1), static_cast<std::ptrdiff_t>(seen.size()));
    }
  }
}

TEST(SelectiveScan, MatchesDoubleLoopOnEveryTarget) {
  ThreadPool pool(2);
  test::ForEachSimdTarget([&](int64_t) {
    std::mt19937 rng(5);
    std::normal_distribution<float> normal(0.0f, 1.0f);
    // Channel counts around the vector widths and the 16-channel work unit;
    // steps long enough that a wrong state carry shows.
    for (size_t d_inner : {1, 5, 16, 37, 300}) {
      for (size_t d_state : {1, 4, 16, 17}) {
        for (size_t steps : {1, 3, 9}) {
          auto random = [&](size_t size, float scale) {
            std::vector<float> v(size);
            for (float& value : v) value = scale * normal(rng);
            return v;
          };
          const std::vector<float> x = random(steps * d_inner, 1.0f), delta_pre = random(steps * d_inner, 2.0f);
          std::vector<float> dt_bias = random(d_inner, 1.0f), a = random(d_state * d_inner, 1.0f);
          for (float& value : a) value = -std::exp(value);
          dt_bias[0] = 25.0f;  // one channel above softplus's linear threshold
          const std::vector<float> d_skip = random(d_inner, 1.0f);
          const size_t bc_stride = 2 * d_state + 3;
          const std::vector<float> bc = random(steps * bc_stride, 1.0f);
          const size_t z_stride = d_inner + 2;
          std::vector<float> z = random(steps * z_stride, 1.0f);
          // Gates far past exp's range: silu is -0 below -88 and z above it
          // (Highway's Exp gave NaN near -178 and z itself below).
          z[0] = -200.0f;
          z[z.size() / 2] = -178.0f;
          z[z.size() - 1] = 150.0f;
          std::vector<float> state = random(d_state * d_inner, 0.5f), out(steps * d_inner + 1, 777.0f);
          std::vector<double> h(state.begin(), state.end());
          SelectiveScan({.d_inner = d_inner, .d_state = d_state, .steps = steps, .x = x.data(),
                         .delta_pre = delta_pre.data(), .dt_bias = dt_bias.data(), .a = a.data(),
                         .d_skip = d_skip.data(), .b = bc.data(), .c = bc.data() + d_state, .bc_stride = bc_stride,
                         .z = z.data(), .z_stride = z_stride, .state = state.data(), .out = out.data()},
                        pool);
          for (size_t t = 0; t < steps; ++t) {
            for (size_t ch = 0; ch < d_inner; ++ch) {
              const double pre = static_cast<double>(delta_pre[t * d_inner + ch]) + dt_bias[ch];
              const double delta = pre > 20.0 ? pre : std::log1p(std::exp(pre));
              const double xv = x[t * d_inner + ch];
              double y = d_skip[ch] * xv;
              for (size_t s = 0; s < d_state; ++s) {
                const size_t at = ScanIndex(s, ch, d_inner, d_state);  // the state's and A's layout
                double& hs = h[at];
                hs = std::exp(delta * a[at]) * hs + delta * bc[t * bc_stride + s] * xv;
                y += hs * bc[t * bc_stride + d_state + s];
              }
              const double zv = z[t * z_stride + ch];
              y *= zv / (1.0 + std::exp(-zv));
              ASSERT_NEAR(out[t * d_inner + ch], y, 2e-5 * (1.0 + std::fabs(y)))
                  << "d_inner " << d_inner << " d_state " << d_state << " t " << t << " ch " << ch;
            }
          }
          for (size_t i = 0; i < h.size(); ++i) ASSERT_NEAR(state[i], h[i], 2e-5 * (1.0 + std::fabs(h[i])));
          ASSERT_EQ(out.back(), 777.0f);
        }
      }
    }
  });
}

}  // namespace
}  // namespace hymba
