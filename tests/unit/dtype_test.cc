#include "core/dtype.h"

#include <gtest/gtest.h>

#include <cmath>
#include <limits>

namespace hymba {
namespace {

TEST(DType, BF16ToF32IsTheUpperHalfOfTheF32Bits) {
  EXPECT_EQ(BF16ToF32(0x3f80), 1.0f);
  EXPECT_EQ(BF16ToF32(0xc000), -2.0f);
  EXPECT_EQ(BF16ToF32(0x3f34), 0.703125f);  // bf16(0.70426935), spec 3.8
  EXPECT_TRUE(std::isinf(BF16ToF32(0x7f80)));
  EXPECT_TRUE(std::isnan(BF16ToF32(0x7fc0)));
}

TEST(DType, F16ToF32CoversNormalsSubnormalsAndSpecials) {
  EXPECT_EQ(F16ToF32(0x3c00), 1.0f);
  EXPECT_EQ(F16ToF32(0xc000), -2.0f);
  EXPECT_EQ(F16ToF32(0x7bff), 65504.0f);
  EXPECT_EQ(F16ToF32(0x0001), std::ldexp(1.0f, -24));  // smallest subnormal
  EXPECT_EQ(F16ToF32(0x03ff), std::ldexp(1023.0f, -24));
  EXPECT_EQ(F16ToF32(0x8000), -0.0f);
  EXPECT_TRUE(std::signbit(F16ToF32(0x8000)));
  EXPECT_EQ(F16ToF32(0xfc00), -std::numeric_limits<float>::infinity());
  EXPECT_TRUE(std::isnan(F16ToF32(0x7e00)));
  EXPECT_EQ(F16ToF32(0x3555), 0.333251953125f);
}

TEST(DType, NamesRoundTripAndUnknownNamesAreRejected) {
  for (DType type : {DType::kF32, DType::kF16, DType::kBF16}) EXPECT_EQ(DTypeFromName(DTypeName(type)), type);
  EXPECT_FALSE(DTypeFromName("I64").has_value());
  EXPECT_FALSE(DTypeFromName("bf16").has_value());
}

TEST(DType, LoadAsF32ReadsUnalignedElements) {
  alignas(4) unsigned char buffer[9] = {0, 0, 0, 0x80, 0x3f, 0, 0, 0, 0};  // f32 1.0 at byte offset 1
  EXPECT_EQ(LoadAsF32(DType::kF32, reinterpret_cast<const std::byte*>(buffer + 1), 0), 1.0f);
}

}  // namespace
}  // namespace hymba
