// The attention kernel on every SIMD target against a double-precision loop.
#include "kernels/attention.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <random>
#include <type_traits>
#include <utility>
#include <vector>

#include "core/dtype.h"
#include "kernels/quantize.h"
#include "simd_targets.h"

namespace hymba {
namespace {

// Keys of `slots` cache slots in the kernel's tiles, padding included.
template <typename T>
struct KeyTiles {
  KeyTiles(size_t slots, size_t dqk)
      : planes(KeyPlanes<T>(dqk)), data(KeyTileIndex<T>((slots + kKeyTile - 1) / kKeyTile * kKeyTile, planes) + kKeyPadding<T>) {}
  T* key(size_t slot) { return &data[KeyTileIndex<T>(slot, planes)]; }
  T& at(size_t slot, size_t i) { return key(slot)[KeyPlaneOffset<T>(i)]; }
  size_t planes;
  std::vector<T> data;
};

// Values of `slots` cache slots in the kernel's tiles.
template <typename T>
struct ValueTiles {
  ValueTiles(size_t slots, size_t dv_) : dv(dv_), data((slots + kKeyTile - 1) / kKeyTile * kKeyTile * dv_) {}
  T* value(size_t slot) { return &data[ValueTileIndex<T>(slot, dv)]; }
  T& at(size_t slot, size_t i) { return value(slot)[ValueElementOffset<T>(i, dv)]; }
  size_t dv;
  std::vector<T> data;
};

double Decoded(float v) { return v; }
double Decoded(hwy::float16_t v) { return F16ToF32(std::bit_cast<uint16_t>(v)); }

// Every head's attention output [heads, dv] by the textbook formula in double.
template <typename T>
std::vector<double> DoubleLoopAttention(const std::vector<float>& queries, size_t heads,
                                        const std::vector<const T*>& key_rows, const std::vector<const T*>& value_rows,
                                        size_t dqk, size_t dv, double scale) {
  const size_t count = key_rows.size();
  std::vector<double> out(heads * dv, 0.0);
  for (size_t j = 0; j < heads; ++j) {
    std::vector<double> weights(count);
    double max_score = -INFINITY, sum = 0;
    for (size_t m = 0; m < count; ++m) {
      double dot = 0;
      for (size_t i = 0; i < dqk; ++i) dot += static_cast<double>(queries[j * dqk + i]) * Decoded(key_rows[m][KeyPlaneOffset<T>(i)]);
      max_score = std::max(max_score, weights[m] = dot * scale);
    }
    for (double& w : weights) sum += (w = std::exp(w - max_score));
    for (size_t i = 0; i < dv; ++i) {
      for (size_t m = 0; m < count; ++m) {
        out[j * dv + i] += weights[m] / sum * Decoded(value_rows[m][ValueElementOffset<T>(i, dv)]);
      }
    }
  }
  return out;
}

TEST(Attend, MatchesDoubleLoopOnEveryTarget) {
  test::ForEachSimdTarget([&](int64_t) {
    std::mt19937 rng(4);
    std::normal_distribution<float> normal(0.0f, 1.0f);
    for (size_t heads : {1, 5, 9}) {  // 9: more heads than one pass takes
      for (size_t dqk : {1, 16, 20, 64}) {
        for (size_t dv : {1, 7, 40, 128}) {
          for (size_t count : {1, 2, 17, 40}) {
            for (bool ring : {true, false}) {
              // Slots as the ring cache hands them out (consecutive from an
              // arbitrary lane, wrapping around) or scattered over the pool.
              const size_t slots = count + 7;
              KeyTiles<float> keys(slots, dqk);
              ValueTiles<float> values(slots, dv);
              for (float& v : keys.data) v = normal(rng);
              for (float& v : values.data) v = normal(rng);
              std::vector<const float*> key_rows, value_rows;
              for (size_t m = 0; m < count; ++m) {
                const size_t slot = ring ? (m + 11) % slots : (m * 5 + 3) % slots;
                key_rows.push_back(keys.key(slot));
                value_rows.push_back(values.value(slot));
              }
              std::vector<float> queries(heads * dqk);
              for (float& v : queries) v = 4.0f * normal(rng);  // sharp softmax
              const float scale = 1.0f / std::sqrt(static_cast<float>(dqk));
              std::vector<float> scores(heads * count), out(heads * dv + 1, 99.0f);
              Attend(queries.data(), heads, key_rows.data(), value_rows.data(), count, dqk, dv, scale, scores.data(),
                     out.data());
              const std::vector<double> expected =
                  DoubleLoopAttention(queries, heads, key_rows, value_rows, dqk, dv, scale);
              for (size_t j = 0; j < heads; ++j) {
                for (size_t i = 0; i < dv; ++i) {
                  ASSERT_NEAR(out[j * dv + i], expected[j * dv + i], 1e-5 * (1 + std::fabs(expected[j * dv + i])))
                      << "heads " << heads << " dqk " << dqk << " dv " << dv << " count " << count << " j " << j;
                }
                // The same head alone gives the same bits: a thread's share of
                // heads must not change any result.
                std::vector<float> alone(dv), alone_scores(count);
                Attend(&queries[j * dqk], 1, key_rows.data(), value_rows.data(), count, dqk, dv, scale,
                       alone_scores.data(), alone.data());
                for (size_t i = 0; i < dv; ++i) ASSERT_EQ(alone[i], out[j * dv + i]);
              }
              ASSERT_EQ(out[heads * dv], 99.0f);
            }
          }
        }
      }
    }
  });
}

// Where a key sits in its tile (which lane, how long a run it shares) does
// not change a bit of the result: prefill, chunked and token-by-token
// decoding hand the kernel the same keys at different places.
TEST(Attend, ResultDoesNotDependOnTilePlacement) {
  test::ForEachSimdTarget([&](int64_t) {
    std::mt19937 rng(6);
    std::normal_distribution<float> normal(0.0f, 1.0f);
    const size_t heads = 5, dqk = 64, dv = 128, count = 45;
    std::vector<float> key_values(count * dqk), value_values(count * dv), queries(heads * dqk);
    for (float& v : key_values) v = normal(rng);
    for (float& v : value_values) v = normal(rng);
    for (float& v : queries) v = 3.0f * normal(rng);
    std::vector<float> first_out;
    for (size_t first_slot : {0, 1, 7, 15, 16, 30}) {
      for (size_t gap_after : {count, size_t{3}, size_t{20}}) {  // a jump in the slots splits a run
        KeyTiles<float> keys(first_slot + count + 40, dqk);
        ValueTiles<float> values(first_slot + count + 40, dv);
        std::vector<const float*> key_rows, value_rows;
        for (size_t m = 0; m < count; ++m) {
          const size_t slot = first_slot + m + (m >= gap_after ? 9 : 0);
          float* key = keys.key(slot);
          for (size_t i = 0; i < dqk; ++i) keys.at(slot, i) = key_values[m * dqk + i];
          for (size_t i = 0; i < dv; ++i) values.at(slot, i) = value_values[m * dv + i];
          key_rows.push_back(key), value_rows.push_back(values.value(slot));
        }
        std::vector<float> scores(heads * count), out(heads * dv);
        Attend(queries.data(), heads, key_rows.data(), value_rows.data(), count, dqk, dv, 0.3f, scores.data(),
               out.data());
        if (first_out.empty()) first_out = out;
        ASSERT_EQ(out, first_out) << "first slot " << first_slot << ", gap after " << gap_after;
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
  KeyTiles<float> keys(count, dqk);
  ValueTiles<float> values(count, dv);
  std::vector<float> queries(heads * dqk);
  for (float& v : keys.data) v = normal(rng);
  for (float& v : values.data) v = normal(rng);
  for (float& v : queries) v = 3.0f * normal(rng);
  std::vector<const float*> key_rows, value_rows;
  for (size_t m = 0; m < count; ++m) key_rows.push_back(keys.key(m)), value_rows.push_back(values.value(m));
  std::vector<float> scores(heads * count), whole(heads * dv);
  Attend(queries.data(), heads, key_rows.data(), value_rows.data(), count, dqk, dv, 0.125f, scores.data(),
         whole.data());
  for (size_t range : {1, 7, 128, 300}) {
    const size_t parts = (count + range - 1) / range;
    std::vector<float> part_out(parts * heads * dv);
    std::vector<SoftmaxStats> stats(parts * heads);
    for (size_t p = 0; p < parts; ++p) {
      const size_t first = p * range, size = std::min(count, first + range) - first;
      // The next range's keys to fetch, as a decode step passes them: they
      // change no bit of this range's result.
      const size_t next_size = std::min(count, first + size + range) - first - size;
      Attend(queries.data(), heads, &key_rows[first], &value_rows[first], size, dqk, dv, 0.125f, scores.data(),
             &part_out[p * heads * dv], &stats[p * heads], {&key_rows[first + size], next_size});
      std::vector<float> alone(heads * dv);
      Attend(queries.data(), heads, &key_rows[first], &value_rows[first], size, dqk, dv, 0.125f, scores.data(),
             alone.data());
      ASSERT_TRUE(std::equal(alone.begin(), alone.end(), &part_out[p * heads * dv])) << "range " << range << " part " << p;
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
TEST(Attend, F16KeysAndValuesMatchDoubleLoopOnEveryTarget) {
  test::ForEachSimdTarget([&](int64_t) {
    std::mt19937 rng(5);
    std::normal_distribution<float> normal(0.0f, 1.0f);
    for (size_t heads : {1, 5}) {
      for (size_t dqk : {1, 7, 20, 64}) {
        for (size_t dv : {7, 128}) {
          for (size_t count : {1, 33}) {
            KeyTiles<hwy::float16_t> keys(count + 3, dqk);  // from lane 3: a partial run first
            ValueTiles<hwy::float16_t> values(count + 3, dv);
            auto fill = [&](std::vector<hwy::float16_t>& rows) {
              for (hwy::float16_t& v : rows) v = std::bit_cast<hwy::float16_t>(F32ToF16(normal(rng)));
            };
            fill(keys.data);
            fill(values.data);
            std::vector<const hwy::float16_t*> key_rows, value_rows;
            for (size_t m = 0; m < count; ++m) key_rows.push_back(keys.key(m + 3)), value_rows.push_back(values.value(m + 3));
            std::vector<float> queries(heads * dqk);
            for (float& v : queries) v = 2.0f * normal(rng);
            std::vector<float> scores(heads * count), out(heads * dv);
            Attend(queries.data(), heads, key_rows.data(), value_rows.data(), count, dqk, dv, 0.125f, scores.data(),
                   out.data());
            const std::vector<double> expected =
                DoubleLoopAttention(queries, heads, key_rows, value_rows, dqk, dv, 0.125);
            for (size_t i = 0; i < heads * dv; ++i) {
              ASSERT_NEAR(out[i], expected[i], 1e-5 * (1 + std::fabs(expected[i])))
                  << "heads " << heads << " dqk " << dqk << " dv " << dv << " count " << count;
            }
          }
        }
      }
    }
  });
}

// Cache type q8: rows of int8 with one f32 scale each.
TEST(QuantizeQ8, RoundsToTheNearestStepOfAbsmaxOver127) {
  const std::vector<float> row = {0.5f, -2.54f, 1.0f, 0.0f, 2.54f, -0.061f};
  const float scale = Q8RowScale(row.data(), row.size());
  EXPECT_FLOAT_EQ(scale, 2.54f / 127);
  const std::vector<int> expected = {25, -127, 50, 0, 127, -3};  // steps of 2.54 / 127 = 0.02
  for (size_t i = 0; i < row.size(); ++i) {
    const int8_t q = QuantizeQ8(row[i], scale);
    EXPECT_LE(std::fabs(q * scale - row[i]), scale / 2 * 1.0001f) << i;
    EXPECT_EQ(q, expected[i]) << i;
  }
  EXPECT_EQ(QuantizeQ8(1000.0f, scale), 127);  // clamped
  EXPECT_EQ(QuantizeQ8(-1000.0f, scale), -127);
  const std::vector<float> zeros(4, 0.0f), overflowed = {1.0f, INFINITY, 2.0f}, nan = {NAN, 1.0f};
  EXPECT_EQ(Q8RowScale(zeros.data(), zeros.size()), 0.0f);
  EXPECT_EQ(QuantizeQ8(0.0f, 0.0f), 0);
  // Tiny values, subnormal ones too: 1 / scale would overflow, the quotient does not.
  for (const std::vector<float>& tiny : {std::vector<float>{1e-38f, 0.0f, -5e-39f}, std::vector<float>{1e-40f, 0.0f}}) {
    const float tiny_scale = Q8RowScale(tiny.data(), tiny.size());
    EXPECT_GT(tiny_scale, 0.0f);
    EXPECT_EQ(QuantizeQ8(tiny[0], tiny_scale), 127);
    EXPECT_EQ(QuantizeQ8(tiny[1], tiny_scale), 0);
  }
  const float overflowed_scale = Q8RowScale(overflowed.data(), overflowed.size());
  EXPECT_TRUE(std::isnan(overflowed_scale));
  EXPECT_TRUE(std::isnan(Q8RowScale(nan.data(), nan.size())));
  EXPECT_EQ(QuantizeQ8(1.0f, overflowed_scale), 0);  // the row's NaN scale carries the overflow
  for (const float scale_value : {0.0f, 1e-30f, 3.25f, -1.5f, INFINITY}) {
    std::vector<int8_t> tile(KeyPlaneOffset<int8_t>(8), 77);  // a key at lane 0, planes 2..5 hold the scale
    StoreQ8Scale(scale_value, tile.data(), 2);
    EXPECT_EQ(LoadQ8Scale(tile.data(), 2), scale_value);
    EXPECT_EQ(tile[KeyPlaneOffset<int8_t>(1)], 77);  // the planes before and the next lane's bytes untouched
    EXPECT_EQ(tile[KeyPlaneOffset<int8_t>(2) + 2], 77);
    EXPECT_EQ(tile[KeyPlaneOffset<int8_t>(6)], 77);
  }
}

// Values in tiles: every element of every slot has its own place, and the
// slices of a tile cover its values exactly, for widths that divide dv and
// for dv that no width up to kValueSlice divides but 1; q8 groups the slots
// of a tile in fours (kernels/attention.h).
template <typename T>
void ExpectEveryValueElementHasItsOwnPlace() {
  for (size_t dv : {1, 7, 8, 16, 32, 40, 64, 96, 128, 37}) {
    const size_t width = ValueSliceWidth(dv);
    EXPECT_EQ(dv % width, 0u) << dv;
    EXPECT_LE(width, kValueSlice);
    const size_t slots = 3 * kKeyTile;
    std::vector<int> seen(slots * dv, 0);
    for (size_t slot = 0; slot < slots; ++slot) {
      const size_t lane = slot % kKeyTile;
      // A q8 slot's place modulo 4 is its place in its quad: the kernel finds quads by it.
      if constexpr (std::is_same_v<T, int8_t>) {
        EXPECT_EQ(ValueTileIndex<T>(slot, dv) % 4, lane % 4);
      }
      for (size_t i = 0; i < dv; ++i) {
        const size_t at = ValueTileIndex<T>(slot, dv) + ValueElementOffset<T>(i, dv);
        ASSERT_LT(at, seen.size()) << "dv " << dv << " slot " << slot << " element " << i;
        ++seen[at];
        if (lane + 1 == kKeyTile) continue;
        // A slice of a tile is one run: the same element of the next slot in
        // the tile is one slice width on (q8: the next key of a quad is next
        // to it, and the next quad four widths on from the quad's first).
        const size_t next = ValueTileIndex<T>(slot + 1, dv) + ValueElementOffset<T>(i, dv);
        if constexpr (std::is_same_v<T, int8_t>) {
          EXPECT_EQ(next, lane % 4 != 3 ? at + 1 : at - 3 + 4 * width);
        } else {
          EXPECT_EQ(next, at + width);
        }
      }
    }
    EXPECT_EQ(std::count(seen.begin(), seen.end(), 1), static_cast<std::ptrdiff_t>(seen.size())) << dv;
  }
}

TEST(ValueTiles, EveryElementHasItsOwnPlace) {
  ExpectEveryValueElementHasItsOwnPlace<float>();
  ExpectEveryValueElementHasItsOwnPlace<int8_t>();
  EXPECT_EQ(ValueSliceWidth(128), 32u);
  EXPECT_EQ(ValueSliceWidth(40), 20u);
  EXPECT_EQ(ValueSliceWidth(7), 7u);
  EXPECT_EQ(ValueSliceWidth(37), 1u);
}

// Keys in tiles: every plane of every slot has its own place, for f32 and for
// q8's pairs of planes (an odd dimension count gains a plane).
template <typename T>
void ExpectEveryKeyPlaneHasItsOwnPlace() {
  for (size_t dqk : {1, 7, 20, 64}) {
    const size_t planes = KeyPlanes<T>(dqk), slots = 3 * kKeyTile;
    EXPECT_EQ(planes, (std::is_same_v<T, int8_t> ? dqk + dqk % 2 + 8 : dqk));
    std::vector<int> seen(slots * planes, 0);
    for (size_t slot = 0; slot < slots; ++slot) {
      for (size_t p = 0; p < planes; ++p) {
        const size_t at = KeyTileIndex<T>(slot, planes) + KeyPlaneOffset<T>(p);
        ASSERT_LT(at, seen.size()) << "dqk " << dqk << " slot " << slot << " plane " << p;
        ++seen[at];
        // One load from a key reads the same plane (pair) of the next keys of its tile.
        if (slot % kKeyTile + 1 < kKeyTile) {
          EXPECT_EQ(KeyTileIndex<T>(slot + 1, planes) + KeyPlaneOffset<T>(p), at + kKeyLaneStride<T>);
        }
      }
    }
    EXPECT_EQ(std::count(seen.begin(), seen.end(), 1), static_cast<std::ptrdiff_t>(seen.size())) << dqk;
  }
}

TEST(KeyTiles, EveryPlaneHasItsOwnPlace) {
  ExpectEveryKeyPlaneHasItsOwnPlace<float>();
  ExpectEveryKeyPlaneHasItsOwnPlace<int8_t>();
}

// How far the q8 kernel's integer products may take one head's output from
// the double loop over the decoded cache: its query is rounded to int16 steps
// of absmax / 32767, which moves a score by at most scale x step / 2 x sum|k|,
// and a convex combination of values by at most twice that times max|v|; each
// key's weight times its value scale is rounded to uint8 steps of its chunk's
// largest / 255 (64 keys), which moves the output by step / 2 x 127 / sum of
// weights per key.
double Q8ProductBound(const float* query, const std::vector<const float*>& key_rows,
                      const std::vector<const float*>& value_rows, size_t dqk, size_t dv, double scale) {
  const size_t count = key_rows.size();
  double query_max = 0, value_max = 0, score_error = 0, max_score = -INFINITY;
  for (size_t i = 0; i < dqk; ++i) query_max = std::max(query_max, std::fabs(static_cast<double>(query[i])));
  std::vector<double> scores(count), value_scales(count);
  for (size_t m = 0; m < count; ++m) {
    double key_sum = 0, dot = 0, row_max = 0;
    for (size_t i = 0; i < dqk; ++i) {
      key_sum += std::fabs(key_rows[m][KeyPlaneOffset<float>(i)]);
      dot += static_cast<double>(query[i]) * key_rows[m][KeyPlaneOffset<float>(i)];
    }
    for (size_t i = 0; i < dv; ++i) row_max = std::max(row_max, std::fabs(static_cast<double>(value_rows[m][ValueElementOffset<float>(i, dv)])));
    score_error = std::max(score_error, scale * query_max / 65534 * key_sum);
    max_score = std::max(max_score, scores[m] = dot * scale);
    value_max = std::max(value_max, row_max);
    value_scales[m] = row_max / 127;
  }
  double sum = 0, weight_error = 0;
  for (double& s : scores) sum += (s = std::exp(s - max_score));
  for (size_t first = 0; first < count; first += 64) {
    double chunk_max = 0;
    const size_t end = std::min(count, first + 64);
    for (size_t m = first; m < end; ++m) chunk_max = std::max(chunk_max, scores[m] * value_scales[m]);
    weight_error += static_cast<double>(end - first) * chunk_max / 510 * 127;
  }
  return 2.02 * score_error * value_max + 1.01 * weight_error / sum;
}

// q8 keys and values (tiles, with both scales in the key's planes) give the
// double loop over the values they stand for, on every target, tails
// included, and the same bits wherever a key sits in its tile and whatever
// keys it is asked to fetch for a next call.
TEST(Attend, Q8KeysAndValuesMatchDoubleLoopOnEveryTarget) {
  test::ForEachSimdTarget([&](int64_t) {
    for (size_t heads : {1, 5, 8}) {
      for (size_t dqk : {1, 7, 20, 64}) {
        for (size_t dv : {7, 40, 51, 128}) {
          for (size_t count : {1, 33, 130}) {
            std::vector<float> first_out;
            for (const auto& [first_slot, scattered] : {std::pair<size_t, bool>{0, false}, {3, false}, {14, false}, {5, true}}) {
              std::mt19937 same(9);  // the same keys and values for every placement
              const size_t slots = first_slot + count + 7;  // 7 is prime to every slot count here
              KeyTiles<int8_t> keys(slots, dqk);
              ValueTiles<int8_t> values(slots, dv);
              std::fill(keys.data.begin(), keys.data.end(), int8_t{-77});  // what no key of the list holds
              std::fill(values.data.begin(), values.data.end(), int8_t{-77});
              KeyTiles<float> decoded_keys(count, dqk);
              ValueTiles<float> decoded_values(count, dv);
              std::vector<float> row(std::max(dqk, dv));
              std::vector<const int8_t*> key_rows, value_rows;
              std::vector<const float*> decoded_key_rows, decoded_value_rows;
              for (size_t m = 0; m < count; ++m) {
                const size_t slot = scattered ? (m * 7 + first_slot) % slots : first_slot + m;
                int8_t* key = keys.key(slot);
                for (size_t i = 0; i < dqk; ++i) row[i] = std::normal_distribution<float>(0.0f, 1.0f)(same);
                const float key_scale = Q8RowScale(row.data(), dqk);
                StoreQ8Scale(key_scale, key, Q8KeyScalePlane(dqk));
                for (size_t i = 0; i < dqk; ++i) {
                  keys.at(slot, i) = QuantizeQ8(row[i], key_scale);
                  decoded_keys.at(m, i) = static_cast<float>(keys.at(slot, i)) * key_scale;
                }
                for (size_t i = 0; i < dv; ++i) row[i] = std::normal_distribution<float>(0.0f, 1.0f)(same);
                const float value_scale = Q8RowScale(row.data(), dv);
                StoreQ8Scale(value_scale, key, Q8ValueScalePlane(dqk));
                for (size_t i = 0; i < dv; ++i) {
                  values.at(slot, i) = QuantizeQ8(row[i], value_scale);
                  decoded_values.at(m, i) = static_cast<float>(values.at(slot, i)) * value_scale;
                }
                key_rows.push_back(key), value_rows.push_back(values.value(slot));
                decoded_key_rows.push_back(decoded_keys.key(m)), decoded_value_rows.push_back(decoded_values.value(m));
              }
              std::vector<float> queries(heads * dqk);
              std::mt19937 query_rng(heads * 1000 + dqk);
              for (float& v : queries) v = 2.0f * std::normal_distribution<float>(0.0f, 1.0f)(query_rng);
              std::vector<float> scores(heads * count), out(heads * dv);
              // After the first placement, with keys to fetch for a next call
              // (its own), which must change nothing.
              const NextKeys<int8_t> next = first_out.empty() ? NextKeys<int8_t>{} : NextKeys<int8_t>{key_rows.data(), count};
              Attend(queries.data(), heads, key_rows.data(), value_rows.data(), count, dqk, dv, 0.3f, scores.data(),
                     out.data(), nullptr, next);
              const std::vector<double> expected =
                  DoubleLoopAttention(queries, heads, decoded_key_rows, decoded_value_rows, dqk, dv, 0.3);
              for (size_t j = 0; j < heads; ++j) {
                const double bound = Q8ProductBound(&queries[j * dqk], decoded_key_rows, decoded_value_rows, dqk, dv, 0.3);
                for (size_t i = j * dv; i < (j + 1) * dv; ++i) {
                  ASSERT_NEAR(out[i], expected[i], 1e-5 * (1 + std::fabs(expected[i])) + bound)
                      << "heads " << heads << " dqk " << dqk << " dv " << dv << " count " << count;
                }
              }
              if (first_out.empty()) first_out = out;
              ASSERT_EQ(out, first_out) << "first slot " << first_slot;
            }
          }
        }
      }
    }
  });
}

// The softmax's exp over the whole range a weight can take: one key per
// score from 0 down to -86 below the largest, each value one-hot, so that
// output m is key m's weight. Each is within 7 ulp of exp in double (the
// exp's own error, the sum's and the division's), and
// a key 200 below the largest weighs 0.
TEST(Attend, SoftmaxWeightsMatchDoubleExpOverTheirWholeRange) {
  test::ForEachSimdTarget([&](int64_t) {
    const size_t count = 101;
    KeyTiles<float> keys(count, 1);
    ValueTiles<float> values(count, count);
    std::vector<const float*> key_rows, value_rows;
    for (size_t m = 0; m < count; ++m) {
      keys.at(m, 0) = m + 1 < count ? -0.86f * static_cast<float>(m) : -200.0f;
      for (size_t i = 0; i < count; ++i) values.at(m, i) = i == m ? 1.0f : 0.0f;
      key_rows.push_back(keys.key(m)), value_rows.push_back(values.value(m));
    }
    const float query = 1.0f;
    std::vector<float> scores(count), out(count);
    Attend(&query, 1, key_rows.data(), value_rows.data(), count, 1, count, 1.0f, scores.data(), out.data());
    double sum = 0;
    for (size_t m = 0; m < count; ++m) sum += std::exp(static_cast<double>(keys.at(m, 0)));
    for (size_t m = 0; m + 1 < count; ++m) {
      const double expected = std::exp(static_cast<double>(keys.at(m, 0))) / sum;
      ASSERT_NEAR(out[m], expected, 4e-7 * expected) << "score " << keys.at(m, 0);
    }
    EXPECT_EQ(out[count - 1], 0.0f);
  });
}

// A q8 row that overflowed upstream stores a NaN scale (Q8RowScale): the
// kernel carries it to every output of the heads that see the row, so that
// sampling reports it instead of going on with garbage.
TEST(Attend, Q8NaNValueScaleReachesTheOutput) {
  test::ForEachSimdTarget([&](int64_t) {
    const size_t count = 40, dqk = 8, dv = 40, heads = 2;
    KeyTiles<int8_t> keys(count, dqk);
    ValueTiles<int8_t> values(count, dv);
    std::vector<const int8_t*> key_rows, value_rows;
    for (size_t m = 0; m < count; ++m) {
      for (size_t i = 0; i < dqk; ++i) keys.at(m, i) = static_cast<int8_t>(m % 7 + i);
      for (size_t i = 0; i < dv; ++i) values.at(m, i) = static_cast<int8_t>(i % 5);
      StoreQ8Scale(0.01f, keys.key(m), Q8KeyScalePlane(dqk));
      StoreQ8Scale(m == 21 ? NAN : 0.02f, keys.key(m), Q8ValueScalePlane(dqk));
      key_rows.push_back(keys.key(m)), value_rows.push_back(values.value(m));
    }
    const std::vector<float> queries(heads * dqk, 0.5f);
    std::vector<float> scores(heads * count), out(heads * dv);
    Attend(queries.data(), heads, key_rows.data(), value_rows.data(), count, dqk, dv, 0.3f, scores.data(), out.data());
    for (float v : out) ASSERT_TRUE(std::isnan(v));
  });
}

TEST(Attend, HugeScoresStayFinite) {
  const std::vector<float> query(16, 100.0f), value(4, 2.0f);
  KeyTiles<float> key(1, 16);
  std::fill(key.data.begin(), key.data.end(), 100.0f);
  const float* keys[] = {key.key(0), key.key(0), key.key(0)};
  const float* values[] = {value.data(), value.data(), value.data()};
  std::vector<float> scores(3), out(4);
  Attend(query.data(), 1, keys, values, 3, 16, 4, 1.0f, scores.data(), out.data());
  for (float v : out) EXPECT_FLOAT_EQ(v, 2.0f);
}

}  // namespace
}  // namespace hymba
