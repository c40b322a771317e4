// Storage types of weights and their conversion to f32: the float types of
// safetensors and the 32-weight blocks q8_0 and q4_0 of GGUF.
#pragma once

#include <bit>
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <optional>
#include <string_view>

namespace hymba {

enum class DType { kF32, kF16, kBF16, kQ8_0, kQ4_0 };

// q8_0: an f16 scale d, then 32 int8 q; weight = d * q.
// q4_0: an f16 scale d, then 16 bytes; byte j holds weight j in its low nibble
// and weight j + 16 in its high nibble; weight = d * (nibble - 8).
constexpr size_t kQuantBlock = 32;
constexpr size_t kQ8_0BlockBytes = 2 + 32;
constexpr size_t kQ4_0BlockBytes = 2 + 16;

inline bool IsQuantized(DType type) { return type == DType::kQ8_0 || type == DType::kQ4_0; }

// Bytes of a row of `cols` weights; quantized rows hold whole blocks
// (callers check cols % kQuantBlock == 0).
inline size_t RowBytes(DType type, size_t cols) {
  switch (type) {
    case DType::kF32: return 4 * cols;
    case DType::kF16:
    case DType::kBF16: return 2 * cols;
    case DType::kQ8_0: return cols / kQuantBlock * kQ8_0BlockBytes;
    case DType::kQ4_0: return cols / kQuantBlock * kQ4_0BlockBytes;
  }
  return 0;
}

inline std::string_view DTypeName(DType type) {
  switch (type) {
    case DType::kF32: return "F32";
    case DType::kF16: return "F16";
    case DType::kBF16: return "BF16";
    case DType::kQ8_0: return "Q8_0";
    case DType::kQ4_0: return "Q4_0";
  }
  return "?";
}

// safetensors spelling; nullopt for types this engine cannot compute with.
inline std::optional<DType> DTypeFromName(std::string_view name) {
  if (name == "F32") return DType::kF32;
  if (name == "F16") return DType::kF16;
  if (name == "BF16") return DType::kBF16;
  return std::nullopt;
}

inline float BF16ToF32(uint16_t bits) { return std::bit_cast<float>(uint32_t{bits} << 16); }

// Round to nearest even; a NaN stays a (quiet) NaN. Inline and branch-free:
// compute type bf16 rounds every activation with it, in a loop the compiler
// vectorises.
inline uint16_t F32ToBF16(float value) {
  const uint32_t bits = std::bit_cast<uint32_t>(value);
  const bool nan = (bits & 0x7fffffffu) > 0x7f800000u;
  return nan ? static_cast<uint16_t>((bits >> 16) | 0x40u)
             : static_cast<uint16_t>((bits + 0x7fffu + ((bits >> 16) & 1u)) >> 16);
}

inline float F16ToF32(uint16_t bits) {
  const uint32_t sign = uint32_t{bits & 0x8000u} << 16;
  const uint32_t exponent = (bits >> 10) & 0x1f;
  const uint32_t mantissa = bits & 0x3ff;
  if (exponent == 0x1f) return std::bit_cast<float>(sign | 0x7f800000u | (mantissa << 13));
  if (exponent == 0) {  // zero or subnormal: mantissa * 2^-24
    const float magnitude = std::ldexp(static_cast<float>(mantissa), -24);
    return sign ? -magnitude : magnitude;
  }
  return std::bit_cast<float>(sign | ((exponent + 112) << 23) | (mantissa << 13));
}

inline uint16_t LoadU16(const std::byte* p) {
  uint16_t bits;
  std::memcpy(&bits, p, 2);
  return bits;
}

// Reads element i of a buffer of `type`; memcpy because mapped tensors need not be aligned.
inline float LoadAsF32(DType type, const std::byte* data, size_t i) {
  switch (type) {
    case DType::kF32: {
      float value;
      std::memcpy(&value, data + 4 * i, 4);
      return value;
    }
    case DType::kF16: return F16ToF32(LoadU16(data + 2 * i));
    case DType::kBF16: return BF16ToF32(LoadU16(data + 2 * i));
    case DType::kQ8_0: {
      const std::byte* block = data + i / kQuantBlock * kQ8_0BlockBytes;
      return F16ToF32(LoadU16(block)) * static_cast<float>(static_cast<int8_t>(block[2 + i % kQuantBlock]));
    }
    case DType::kQ4_0: {
      const std::byte* block = data + i / kQuantBlock * kQ4_0BlockBytes;
      const size_t j = i % kQuantBlock;
      const auto packed = static_cast<uint8_t>(block[2 + j % 16]);
      const int nibble = j < 16 ? (packed & 0x0f) : (packed >> 4);
      return F16ToF32(LoadU16(block)) * static_cast<float>(nibble - 8);
    }
  }
  return 0.0f;
}

}  // namespace hymba
