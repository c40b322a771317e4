#include "kernels/quantize.h"

#include <algorithm>
#include <bit>
#include <cmath>
#include <cstring>

namespace hymba {
namespace {

void StoreU16(std::byte* p, uint16_t bits) { std::memcpy(p, &bits, 2); }

}  // namespace

uint16_t F32ToF16(float value) {
  const uint32_t bits = std::bit_cast<uint32_t>(value);
  const auto sign = static_cast<uint16_t>((bits >> 16) & 0x8000);
  const float magnitude = std::fabs(value);
  if (std::isnan(value)) return static_cast<uint16_t>(sign | 0x7e00);
  if (magnitude >= 65520.0f) return static_cast<uint16_t>(sign | 0x7c00);  // rounds to infinity
  if (magnitude < 6.103515625e-05f) {  // subnormal: multiples of 2^-24, rounded to nearest even by rint
    return static_cast<uint16_t>(sign | static_cast<uint16_t>(std::nearbyint(magnitude * 16777216.0f)));
  }
  const uint32_t m = bits & 0x7fffffffu;
  // Re-bias the exponent and round the 13 dropped mantissa bits to nearest even.
  const uint32_t rounded = m + 0xfff + ((m >> 13) & 1);
  return static_cast<uint16_t>(sign | ((rounded - (112u << 23)) >> 13));
}

void QuantizeRow(DType type, std::span<const float> values, std::byte* out) {
  const size_t n = values.size();
  switch (type) {
    case DType::kF32: std::memcpy(out, values.data(), 4 * n); return;
    case DType::kF16:
      for (size_t i = 0; i < n; ++i) StoreU16(out + 2 * i, F32ToF16(values[i]));
      return;
    case DType::kBF16:
      for (size_t i = 0; i < n; ++i) StoreU16(out + 2 * i, F32ToBF16(values[i]));
      return;
    case DType::kQ8_0:
      for (size_t b = 0; b < n / kQuantBlock; ++b) {
        const float* x = &values[b * kQuantBlock];
        std::byte* block = out + b * kQ8_0BlockBytes;
        float amax = 0.0f;
        for (size_t j = 0; j < kQuantBlock; ++j) amax = std::max(amax, std::fabs(x[j]));
        const float d = amax / 127.0f;
        const float inverse = d != 0.0f ? 1.0f / d : 0.0f;
        StoreU16(block, F32ToF16(d));
        for (size_t j = 0; j < kQuantBlock; ++j) {
          block[2 + j] = static_cast<std::byte>(static_cast<int8_t>(std::lround(x[j] * inverse)));
        }
      }
      return;
    case DType::kQ4_0:
      for (size_t b = 0; b < n / kQuantBlock; ++b) {
        const float* x = &values[b * kQuantBlock];
        std::byte* block = out + b * kQ4_0BlockBytes;
        float amax = 0.0f, extreme = 0.0f;  // the value of largest magnitude, with its sign
        for (size_t j = 0; j < kQuantBlock; ++j) {
          if (std::fabs(x[j]) > amax) {
            amax = std::fabs(x[j]);
            extreme = x[j];
          }
        }
        const float d = extreme / -8.0f;  // the extreme maps to nibble 0, i.e. -8
        const float inverse = d != 0.0f ? 1.0f / d : 0.0f;
        StoreU16(block, F32ToF16(d));
        auto nibble = [&](float v) { return std::min(15, static_cast<int>(v * inverse + 8.5f)); };
        for (size_t j = 0; j < 16; ++j) {
          block[2 + j] = static_cast<std::byte>(nibble(x[j]) | (nibble(x[j + 16]) << 4));
        }
      }
      return;
  }
}

}  // namespace hymba
