// Conversions to each storage type: exact round trips, rounding to nearest
// even, and ggml's q8_0 / q4_0 block layouts and error bounds.
#include "kernels/quantize.h"

#include <gtest/gtest.h>

#include <bit>
#include <cmath>
#include <random>
#include <vector>

namespace hymba {
namespace {

TEST(Quantize, F16RoundTripsEveryFiniteHalfAndRoundsToEven) {
  for (uint32_t bits = 0; bits < 0x10000; ++bits) {
    const float value = F16ToF32(static_cast<uint16_t>(bits));
    if (std::isnan(value)) continue;
    ASSERT_EQ(F32ToF16(value), bits) << std::hex << bits;
  }
  EXPECT_EQ(F32ToF16(1.0f + 0x1p-11f), 0x3c00);          // halfway: to the even neighbour 1.0
  EXPECT_EQ(F32ToF16(1.0f + 3 * 0x1p-11f), 0x3c02);      // halfway: to the even neighbour above
  EXPECT_EQ(F32ToF16(0x1p-25f), 0x0000);                  // half the smallest subnormal: to even, zero
  EXPECT_EQ(F32ToF16(3 * 0x1p-25f), 0x0002);
  EXPECT_EQ(F32ToF16(65520.0f), 0x7c00);                  // overflows to infinity
  EXPECT_EQ(F32ToF16(-1e9f), 0xfc00);
  EXPECT_TRUE(std::isnan(F16ToF32(F32ToF16(NAN))));
}

TEST(Quantize, Bf16RoundsToNearestEven) {
  EXPECT_EQ(F32ToBF16(1.0f), 0x3f80);
  EXPECT_EQ(F32ToBF16(std::bit_cast<float>(0x3f808000u)), 0x3f80);  // halfway, even below
  EXPECT_EQ(F32ToBF16(std::bit_cast<float>(0x3f818000u)), 0x3f82);  // halfway, even above
  EXPECT_EQ(F32ToBF16(std::bit_cast<float>(0x3f808001u)), 0x3f81);
  EXPECT_TRUE(std::isnan(BF16ToF32(F32ToBF16(NAN))));
}

TEST(Quantize, Q8_0LayoutAndError) {
  std::vector<float> x(64);
  for (size_t i = 0; i < x.size(); ++i) x[i] = std::sin(static_cast<float>(i)) * (i < 32 ? 1.0f : 1000.0f);
  std::vector<std::byte> out(RowBytes(DType::kQ8_0, 64));
  ASSERT_EQ(out.size(), 68u);
  QuantizeRow(DType::kQ8_0, x, out.data());
  for (size_t b = 0; b < 2; ++b) {
    float amax = 0;
    for (size_t j = 0; j < 32; ++j) amax = std::max(amax, std::fabs(x[b * 32 + j]));
    const float d = F16ToF32(LoadU16(&out[b * 34]));
    EXPECT_NEAR(d, amax / 127, amax / 127 * 1e-3);
    for (size_t j = 0; j < 32; ++j) {
      EXPECT_EQ(static_cast<int8_t>(out[b * 34 + 2 + j]), std::lround(x[b * 32 + j] / (amax / 127)));
      EXPECT_NEAR(LoadAsF32(DType::kQ8_0, out.data(), b * 32 + j), x[b * 32 + j], 0.51 * d + 1e-3 * amax);
    }
  }
}

TEST(Quantize, Q4_0LayoutAndError) {
  std::vector<float> x(32);
  for (size_t i = 0; i < 32; ++i) x[i] = static_cast<float>(i) - 20.0f;  // extreme -20 maps to -8
  std::vector<std::byte> out(RowBytes(DType::kQ4_0, 32));
  ASSERT_EQ(out.size(), 18u);
  QuantizeRow(DType::kQ4_0, x, out.data());
  const float d = F16ToF32(LoadU16(out.data()));
  EXPECT_FLOAT_EQ(d, 2.5f);  // -20 / -8
  EXPECT_EQ(static_cast<uint8_t>(out[2]) & 0x0f, 0);  // x[0] = -20 -> nibble 0
  EXPECT_EQ(static_cast<uint8_t>(out[2]) >> 4, 6);    // x[16] = -4: -4 / 2.5 + 8.5 = 6.9, truncated as ggml does
  for (size_t j = 0; j < 32; ++j) EXPECT_NEAR(LoadAsF32(DType::kQ4_0, out.data(), j), x[j], d * 0.5 + 1e-6) << j;
}

TEST(Quantize, ZeroBlocksStayZero) {
  const std::vector<float> zeros(32, 0.0f);
  for (DType type : {DType::kQ8_0, DType::kQ4_0}) {
    std::vector<std::byte> out(RowBytes(type, 32), std::byte{0xff});
    QuantizeRow(type, zeros, out.data());
    for (size_t j = 0; j < 32; ++j) EXPECT_EQ(LoadAsF32(type, out.data(), j), 0.0f);
  }
}

}  // namespace
}  // namespace hymba
