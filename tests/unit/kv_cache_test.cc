// The K/V cache's addressing: every position a query may see, through the
// ring, across blocks and in the uncommitted scratch, at the key and value
// that were appended for it.
#include <gtest/gtest.h>

#include <algorithm>
#include <bit>
#include <cmath>
#include <cstdint>
#include <vector>

#include "core/dtype.h"
#include "model/forward.h"

namespace hymba {
namespace {

// Element i of K/V head h of position p: distinct enough between positions
// that a pointer to a neighbour's row cannot pass for the right one.
float KeyElement(int64_t p, size_t h, size_t i) { return std::sin(0.37f * static_cast<float>(p) + 1.3f * h + 0.71f * i); }
float ValueElement(int64_t p, size_t h, size_t i) { return std::cos(0.53f * static_cast<float>(p) + 0.9f * h + 0.29f * i); }

template <typename T>
float Decode(const T* row, size_t offset, [[maybe_unused]] float scale) {
  if constexpr (std::is_same_v<T, float>) return row[offset];
  else if constexpr (std::is_same_v<T, int8_t>) return scale * row[offset];
  else return F16ToF32(std::bit_cast<uint16_t>(row[offset]));
}

template <typename T>
class KvCacheTest : public ::testing::Test {};
using Elements = ::testing::Types<float, hwy::float16_t, int8_t>;
TYPED_TEST_SUITE(KvCacheTest, Elements);

// A sliding-window owner keeps a ring of window + 1 slots after the meta
// tokens (21: its wrap falls inside a key tile), a global one the whole
// history (past a block of 256 slots). Each asks for the meta part and the
// window of the newest position, in runs of every length that a tile's
// boundary, the wrap or the scratch may cut.
TYPED_TEST(KvCacheTest, RowsPointAtEachPositionsKeyAndValue) {
  using T = TypeParam;
  Config c;
  c.num_key_value_heads = 2;
  c.head_dim_qk = 5;   // odd: q8 pairs it with a zero
  c.head_dim_v = 40;   // slices of 20
  c.num_memory_tokens = 3;
  c.sliding_window = 20;
  for (const bool global : {false, true}) {
    c.layers = {LayerRole{global, 0}};
    KvCacheOf<T> cache(c, 0);
    const size_t kv_heads = 2, dqk = 5, dv = 40;
    std::vector<float> key(kv_heads * dqk), value(kv_heads * dv);
    auto append = [&](int64_t p) {
      for (size_t h = 0; h < kv_heads; ++h) {
        for (size_t i = 0; i < dqk; ++i) key[h * dqk + i] = KeyElement(p, h, i);
        for (size_t i = 0; i < dv; ++i) value[h * dv + i] = ValueElement(p, h, i);
      }
      cache.Append(key.data(), value.data());
    };
    auto check = [&](int64_t first, size_t count) {
      std::vector<const T*> keys(count), values(count);
      for (size_t h = 0; h < kv_heads; ++h) {
        cache.Rows(first, count, h, keys.data(), values.data());
        for (size_t n = 0; n < count; ++n) {
          const int64_t p = first + static_cast<int64_t>(n);
          float key_scale = 0.0f, value_scale = 0.0f;
          if constexpr (std::is_same_v<T, int8_t>) {
            key_scale = LoadQ8Scale(keys[n], Q8KeyScalePlane(dqk));
            value_scale = LoadQ8Scale(keys[n], Q8ValueScalePlane(dqk));
          }
          // Within the storage's rounding: q8 half a step, f16 2^-11.
          const float key_tolerance = std::is_same_v<T, int8_t> ? key_scale : 1e-3f;
          const float value_tolerance = std::is_same_v<T, int8_t> ? value_scale : 1e-3f;
          for (size_t i = 0; i < dqk; ++i) {
            ASSERT_NEAR(Decode(keys[n], KeyPlaneOffset<T>(i), key_scale), KeyElement(p, h, i), key_tolerance)
                << "position " << p << " head " << h << " key element " << i << " (asked from " << first << ", " << count << ")";
          }
          for (size_t i = 0; i < dv; ++i) {
            ASSERT_NEAR(Decode(values[n], ValueElementOffset<T>(i, dv), value_scale), ValueElement(p, h, i), value_tolerance)
                << "position " << p << " head " << h << " value element " << i << " (asked from " << first << ", " << count << ")";
          }
        }
      }
    };
    auto check_visible = [&]() {
      const int64_t newest = cache.positions() - 1;
      const int64_t window_begin = global ? 0 : std::max<int64_t>(0, newest - c.sliding_window);
      const int64_t meta_end = std::min(window_begin, c.num_memory_tokens);
      if (meta_end > 0) check(0, static_cast<size_t>(meta_end));
      for (const int64_t run : {1, 5, 16, 33, 400}) {
        for (int64_t first = window_begin; first <= newest; first += run) {
          check(first, static_cast<size_t>(std::min(run, newest + 1 - first)));
        }
      }
    };
    int64_t position = 0;
    for (const int64_t chunk : {3, 1, 7, 16, 40, 1, 1, 250, 5, 1}) {
      for (int64_t t = 0; t < chunk; ++t) append(position++);
      check_visible();  // the chunk still in the scratch
      cache.Commit();
      check_visible();
    }
  }
}

}  // namespace
}  // namespace hymba
