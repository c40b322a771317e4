// The layout in which the int8 kernels read q8_0 and q4_0 matrices: rows in
// groups of 16, one row per 32-bit lane of an AVX-512 vector, so a single
// VNNI instruction advances 16 rows by 4 weights each against the same 4
// activations, and a row's sum over a block ends in its own lane with no
// horizontal reduction. A model file's rows are rewritten into it in place
// when the model loads: the layout has exactly the size of the GGUF rows.
//
// Group g holds rows [16 g, 16 g + m), m = min(16, rows - 16 g), and starts
// where row 16 g started. With nb = cols / 32 blocks per row it stores
//   scales: [nb][m] f16, the block scales of GGUF;
//   quants: [nb][chunks][m][4] bytes. q8_0: 8 chunks, chunk t holds weights
//           4t..4t+3 of the block, each biased by +128 to be unsigned;
//           q4_0: 4 chunks, chunk v holds GGUF's bytes 4v..4v+3, i.e.
//           weights 4v+i in the low and 16+4v+i in the high nibbles.
// Weights are d * (u - 128) for q8_0 and d * (nibble - 8) for q4_0.
#pragma once

#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <span>
#include <vector>

#include "core/dtype.h"

namespace hymba {

constexpr size_t kInterleaveRows = 16;

// Quant bytes of one row's block: 32 for q8_0, 16 for q4_0.
constexpr size_t InterleavedQuantBytes(DType type) { return type == DType::kQ8_0 ? kQuantBlock : kQuantBlock / 2; }

// Where row r lives: its group's scales and quants, the group's row count
// and the row's lane.
struct InterleavedGroup {
  const std::byte* scales;  // [nb][lanes] f16
  const std::byte* quants;  // [nb][chunks][lanes][4]
  size_t lanes;
  size_t lane;
};

inline InterleavedGroup FindGroup(DType type, const std::byte* matrix, size_t rows, size_t cols, size_t r) {
  const size_t first = r / kInterleaveRows * kInterleaveRows;
  const size_t lanes = std::min(kInterleaveRows, rows - first);
  const std::byte* scales = matrix + first * RowBytes(type, cols);
  return {scales, scales + 2 * (cols / kQuantBlock) * lanes, lanes, r - first};
}

// The stored (unsigned) value of weight 0 and of weight e (0..31) of `lane`
// in one block's quants of a group of `lanes` rows.
constexpr int InterleavedZeroPoint(DType type) { return type == DType::kQ8_0 ? 128 : 8; }

inline int StoredQuant(DType type, const std::byte* block_quants, size_t lanes, size_t lane, size_t e) {
  if (type == DType::kQ8_0) return static_cast<uint8_t>(block_quants[(e / 4 * lanes + lane) * 4 + e % 4]);
  const size_t low = e % 16;
  const auto packed = static_cast<uint8_t>(block_quants[(low / 4 * lanes + lane) * 4 + low % 4]);
  return e < 16 ? packed & 0x0f : packed >> 4;
}

// Row r's weights as f32, out[0, cols).
inline void DecodeInterleavedRow(DType type, const std::byte* matrix, size_t rows, size_t cols, size_t r, float* out) {
  const InterleavedGroup group = FindGroup(type, matrix, rows, cols, r);
  const size_t m = group.lanes, blocks = cols / kQuantBlock;
  for (size_t b = 0; b < blocks; ++b) {
    const float scale = F16ToF32(LoadU16(group.scales + 2 * (b * m + group.lane)));
    const std::byte* quants = group.quants + b * m * InterleavedQuantBytes(type);
    for (size_t e = 0; e < kQuantBlock; ++e) {
      out[b * kQuantBlock + e] =
          scale * static_cast<float>(StoredQuant(type, quants, m, group.lane, e) - InterleavedZeroPoint(type));
    }
  }
}

// Rewrites rows x cols of q8_0 or q4_0 in GGUF's row layout, in place, into
// the interleaved layout above.
inline void InterleaveQuantizedRows(DType type, size_t rows, size_t cols, std::span<std::byte> matrix) {
  const size_t row_bytes = RowBytes(type, cols), blocks = cols / kQuantBlock;
  const size_t block_bytes = row_bytes / blocks, quant_bytes = InterleavedQuantBytes(type);
  std::vector<std::byte> original(kInterleaveRows * row_bytes);
  for (size_t first = 0; first < rows; first += kInterleaveRows) {
    const size_t m = std::min(kInterleaveRows, rows - first);
    std::byte* base = matrix.data() + first * row_bytes;
    std::memcpy(original.data(), base, m * row_bytes);
    std::byte* quants = base + 2 * blocks * m;
    for (size_t j = 0; j < m; ++j) {
      for (size_t b = 0; b < blocks; ++b) {
        const std::byte* block = original.data() + j * row_bytes + b * block_bytes;
        std::memcpy(base + 2 * (b * m + j), block, 2);
        for (size_t chunk = 0; chunk < quant_bytes / 4; ++chunk) {
          std::byte* out = quants + b * m * quant_bytes + (chunk * m + j) * 4;
          std::memcpy(out, block + 2 + 4 * chunk, 4);
          if (type == DType::kQ8_0) {
            for (size_t i = 0; i < 4; ++i) out[i] ^= std::byte{0x80};  // int8 q -> uint8 q + 128
          }
        }
      }
    }
  }
}

}  // namespace hymba
