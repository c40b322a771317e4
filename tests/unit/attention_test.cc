// The attention kernel on every SIMD target against a double-precision loop.
#include "kernels/attention.h"

#include <gtest/gtest.h>

#include <cmath>
#include <random>
#include <vector>

#include "core/dtype.h"
#include "kernels/quantize.h"
#include "simd_targets.h"

namespace hymba {
namespace {

TEST(Attend, MatchesDoubleLoopOnEveryTarget) {
  test::ForEachSimdTarget([&](int64_t) {
    std::mt19937 rng(4);
    std::normal_distribution<float> normal(0.0f, 1.0f);
    for (size_t heads : {1, 5, 9}) {  // 9: more heads than one pass takes
      for (size_t dqk : {1, 16, 20, 64}) {
        for (size_t dv : {1, 7, 40, 128}) {
          for (size_t count : {1, 2, 17, 40}) {
            // Rows scattered in a pool, at offsets, as the ring cache hands them out.
            const size_t key_offset = 3, value_offset = 5, width = dqk + dv + 8;
            std::vector<float> pool((count + 7) * width);
            for (float& v : pool) v = normal(rng);
            std::vector<const float*> key_rows, value_rows;
            for (size_t m = 0; m < count; ++m) {
              const size_t row = (m * 5 + 3) % (count + 7);
              key_rows.push_back(&pool[row * width]);
              value_rows.push_back(&pool[row * width + dqk]);
            }
            std::vector<float> queries(heads * dqk);
            for (float& v : queries) v = 4.0f * normal(rng);  // sharp softmax
            const float scale = 1.0f / std::sqrt(static_cast<float>(dqk));
            std::vector<float> scores(heads * count), out(heads * dv + 1, 99.0f);
            Attend(queries.data(), heads, key_rows.data(), key_offset, value_rows.data(), value_offset, count, dqk, dv,
                   scale, scores.data(), out.data());
            for (size_t j = 0; j < heads; ++j) {
              std::vector<double> weights(count);
              double max_score = -INFINITY, sum = 0;
              for (size_t m = 0; m < count; ++m) {
                double dot = 0;
                for (size_t i = 0; i < dqk; ++i) dot += static_cast<double>(queries[j * dqk + i]) * key_rows[m][key_offset + i];
                weights[m] = dot * scale;
                max_score = std::max(max_score, weights[m]);
              }
              for (double& w : weights) sum += (w = std::exp(w - max_score));
              for (size_t i = 0; i < dv; ++i) {
                double expected = 0;
                for (size_t m = 0; m < count; ++m) expected += weights[m] / sum * value_rows[m][value_offset + i];
                ASSERT_NEAR(out[j * dv + i], expected, 1e-5 * (1 + std::fabs(expected)))
                    << "heads " << heads << " dqk " << dqk << " dv " << dv << " count " << count << " j " << j;
              }
              // The same head alone gives the same bits: a thread's share of
              // heads must not change any result.
              std::vector<float> alone(dv), alone_scores(count);
              Attend(&queries[j * dqk], 1, key_rows.data(), key_offset, value_rows.data(), value_offset, count, dqk, dv,
                     scale, alone_scores.data(), alone.data());
              for (size_t i = 0; i < dv; ++i) ASSERT_EQ(alone[i], out[j * dv + i]);
            }
            ASSERT_EQ(out[heads * dv], 99.0f);
          }
        }
      }
    }
  });
}

// A head's keys cut into ranges, each attended on its own and merged, give
// the result over the whole list; one range comes back bit for bit.
TEST(Attend, RangesMergeIntoTheWholeList) {
  std::mt19937 rng(9);
  std::normal_distribution<float> normal(0.0f, 1.0f);
  const size_t heads = 5, dqk = 64, dv = 128, count = 300;
  std::vector<float> keys(count * dqk), values(count * dv), queries(heads * dqk);
  for (float& v : keys) v = normal(rng);
  for (float& v : values) v = normal(rng);
  for (float& v : queries) v = 3.0f * normal(rng);
  std::vector<const float*> key_rows, value_rows;
  for (size_t m = 0; m < count; ++m) key_rows.push_back(&keys[m * dqk]), value_rows.push_back(&values[m * dv]);
  std::vector<float> scores(heads * count), whole(heads * dv);
  Attend(queries.data(), heads, key_rows.data(), 0, value_rows.data(), 0, count, dqk, dv, 0.125f, scores.data(),
         whole.data());
  for (size_t range : {1, 7, 128, 300}) {
    const size_t parts = (count + range - 1) / range;
    std::vector<float> part_out(parts * heads * dv);
    std::vector<SoftmaxStats> stats(parts * heads);
    for (size_t p = 0; p < parts; ++p) {
      const size_t first = p * range, size = std::min(count, first + range) - first;
      Attend(queries.data(), heads, &key_rows[first], 0, &value_rows[first], 0, size, dqk, dv, 0.125f, scores.data(),
             &part_out[p * heads * dv], &stats[p * heads]);
    }
    for (size_t j = 0; j < heads; ++j) {
      std::vector<float> merged(dv);
      MergeAttention(&part_out[j * dv], heads * dv, &stats[j], heads, parts, dv, merged.data());
      for (size_t i = 0; i < dv; ++i) {
        if (parts == 1) {
          ASSERT_EQ(merged[i], whole[j * dv + i]) << "head " << j;
        } else {
          ASSERT_NEAR(merged[i], whole[j * dv + i], 1e-5f * (1 + std::fabs(whole[j * dv + i]))) << "range " << range;
        }
      }
    }
  }
}

// Keys and values stored as f16 (cache type f16) give the double loop over
// the values the f16 bits hold, on every target, tails included.
TEST(Attend, F16RowsMatchDoubleLoopOnEveryTarget) {
  test::ForEachSimdTarget([&](int64_t) {
    std::mt19937 rng(5);
    std::normal_distribution<float> normal(0.0f, 1.0f);
    for (size_t heads : {1, 5}) {
      for (size_t dqk : {20, 64}) {
        for (size_t dv : {7, 128}) {
          for (size_t count : {1, 33}) {
            std::vector<hwy::float16_t> keys(count * dqk), values(count * dv);
            auto fill = [&](std::vector<hwy::float16_t>& rows) {
              for (hwy::float16_t& v : rows) v = std::bit_cast<hwy::float16_t>(F32ToF16(normal(rng)));
            };
            fill(keys);
            fill(values);
            auto decoded = [](hwy::float16_t v) { return static_cast<double>(F16ToF32(std::bit_cast<uint16_t>(v))); };
            std::vector<const hwy::float16_t*> key_rows, value_rows;
            for (size_t m = 0; m < count; ++m) key_rows.push_back(&keys[m * dqk]), value_rows.push_back(&values[m * dv]);
            std::vector<float> queries(heads * dqk);
            for (float& v : queries) v = 2.0f * normal(rng);
            std::vector<float> scores(heads * count), out(heads * dv);
            Attend(queries.data(), heads, key_rows.data(), 0, value_rows.data(), 0, count, dqk, dv, 0.125f,
                   scores.data(), out.data());
            for (size_t j = 0; j < heads; ++j) {
              std::vector<double> weights(count);
              double max_score = -INFINITY, sum = 0;
              for (size_t m = 0; m < count; ++m) {
                double dot = 0;
                for (size_t i = 0; i < dqk; ++i) dot += static_cast<double>(queries[j * dqk + i]) * decoded(keys[m * dqk + i]);
                max_score = std::max(max_score, weights[m] = dot * 0.125);
              }
              for (double& w : weights) sum += (w = std::exp(w - max_score));
              for (size_t i = 0; i < dv; ++i) {
                double expected = 0;
                for (size_t m = 0; m < count; ++m) expected += weights[m] / sum * decoded(values[m * dv + i]);
                ASSERT_NEAR(out[j * dv + i], expected, 1e-5 * (1 + std::fabs(expected)))
                    << "heads " << heads << " dqk " << dqk << " dv " << dv << " count " << count;
              }
            }
          }
        }
      }
    }
  });
}

TEST(Attend, HugeScoresStayFinite) {
  const std::vector<float> query(16, 100.0f), key(16, 100.0f), value(4, 2.0f);
  const float* keys[] = {key.data(), key.data(), key.data()};
  const float* values[] = {value.data(), value.data(), value.data()};
  std::vector<float> scores(3), out(4);
  Attend(query.data(), 1, keys, 0, values, 0, 3, 16, 4, 1.0f, scores.data(), out.data());
  for (float v : out) EXPECT_FLOAT_EQ(v, 2.0f);
}

}  // namespace
}  // namespace hymba
