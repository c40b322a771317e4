// The layout in which the matrix kernels read every weight matrix of a
// loaded model: rows in groups of G (GroupRows: 16 for q8_0 and q4_0, 4 for
// f32, f16 and bf16), each group read whole by one register tile, so that the
// tile consumes memory in order: a decoding step streams the weights as one
// run instead of one stream per row (bf16 rows read four at a time reached
// 23 GB/s, groups 30-33 GB/s, on 2 cores of Zen 4), and a prompt's tiles
// read each group's chunks in order from L2. A model file's rows are
// rewritten into it in place when the model loads: the layout has exactly
// the size of the rows.
//
// Group g holds rows [G g, G g + m), m = min(G, rows - G g), and starts where
// row G g started.
//
// q8_0 and q4_0 (nb = cols / 32 blocks per row), one row per 32-bit lane of
// an AVX-512 vector, so a single VNNI instruction advances 16 rows by 4
// weights each against the same 4 activations and a row's sum over a block
// ends in its own lane with no horizontal reduction. nb blocks, each
//   scales: [m] f16, the block's scales in GGUF;
//   quants: [chunks][m][4] bytes. q8_0: 8 chunks, chunk t holds weights
//           4t..4t+3 of the block, each biased by +128 to be unsigned;
//           q4_0: 4 chunks, chunk v holds GGUF's bytes 4v..4v+3, i.e.
//           weights 4v+i in the low and 16+4v+i in the high nibbles.
// Weights are d * (u - 128) for q8_0 and d * (nibble - 8) for q4_0. A block's
// scales sit before its quants, so a group is one run read in order (apart,
// scales and quants were two streams, and decoding read 26 GB/s where the
// float kernels' single streams read 36-38).
//
// bf16 weights for bf16 products (compute type bf16, Layout::kBf16Pairs):
// groups of 32 rows, two AVX-512 vectors of one row per 32-bit lane, so one
// VDPBF16PS advances 16 rows by a column pair against the same broadcast pair
// of activations, and every row's sum ends in its own lane:
//   pairs: [cols / 2][m][2] values, row j's columns 2p and 2p+1 together;
//   tail:  [m][cols % 2] values.
// Read against the activations of 12 tokens at a time, a group's 128 bytes
// per pair step meet 48 bytes of activations, where the 4-row chunks, each
// row's 32 columns a vector, met 6 tokens' 384.
//
// f32, f16 and bf16 (nc = cols / 32 chunks per row, tail = cols % 32):
//   chunks: [nc][m][32] values, a row's 32 columns 32c..32c+31 together:
//           bf16 in column order, so a 32-bit lane j holds columns 2j and
//           2j+1 (the pair VDPBF16PS multiplies, split by a shift and a mask
//           otherwise); f32 and f16 the 16 even columns, then the 16 odd
//           ones, so both halves load as vectors without a shuffle;
//   tail:   [m][tail] values, row by row in column order.
#pragma once

#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <span>
#include <vector>

#include "core/dtype.h"

namespace hymba {

// How a matrix's rows lie in memory.
enum class Layout : uint8_t {
  kRowMajor,   // as files store them
  kGroups,     // in groups, as the matrix kernels read them (above)
  kBf16Pairs,  // bf16 in groups of 32 rows by column pairs, for bf16 products (above)
};

// The layout InterleaveRows gives a loaded model's matrix of `type`.
inline Layout LoadedLayout(DType type, bool bf16_products) {
  return type == DType::kBF16 && bf16_products ? Layout::kBf16Pairs : Layout::kGroups;
}

constexpr size_t kInterleaveRows = 16;  // q8_0 and q4_0
constexpr size_t kFloatGroupRows = 4;   // f32, f16 and bf16: the float kernels' register tile
constexpr size_t kBf16PairRows = 32;    // Layout::kBf16Pairs: two vectors of 16 rows

inline size_t GroupRows(DType type, Layout layout) {
  if (layout == Layout::kBf16Pairs) return kBf16PairRows;
  return IsQuantized(type) ? kInterleaveRows : kFloatGroupRows;
}

// Quant bytes of one row's block: 32 for q8_0, 16 for q4_0.
constexpr size_t InterleavedQuantBytes(DType type) { return type == DType::kQ8_0 ? kQuantBlock : kQuantBlock / 2; }

// Where row r lives: its group's first block's scales and quants (block b's
// are block_bytes further on), the group's row count and the row's lane.
struct InterleavedGroup {
  const std::byte* scales;  // [lanes] f16
  const std::byte* quants;  // [chunks][lanes][4]
  size_t block_bytes;
  size_t lanes;
  size_t lane;
};

inline InterleavedGroup FindGroup(DType type, const std::byte* matrix, size_t rows, size_t cols, size_t r) {
  const size_t first = r / kInterleaveRows * kInterleaveRows;
  const size_t lanes = std::min(kInterleaveRows, rows - first);
  const std::byte* scales = matrix + first * RowBytes(type, cols);
  return {scales, scales + 2 * lanes, lanes * (2 + InterleavedQuantBytes(type)), lanes, r - first};
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

constexpr size_t kFloatChunk = 32;

// Where column e (0..31) of a float chunk is stored within it.
constexpr size_t FloatChunkSlot(DType type, size_t e) {
  return type == DType::kBF16 ? e : (e % 2 == 0 ? e / 2 : kFloatChunk / 2 + e / 2);
}

// Element index, from the start of row r's group, of row r's column c.
inline size_t InterleavedFloatIndex(DType type, size_t rows, size_t cols, size_t r, size_t c) {
  const size_t first = r / kFloatGroupRows * kFloatGroupRows;
  const size_t m = std::min(kFloatGroupRows, rows - first), j = r - first;
  const size_t chunks = cols / kFloatChunk;
  if (c < chunks * kFloatChunk) {
    return (c / kFloatChunk * m + j) * kFloatChunk + FloatChunkSlot(type, c % kFloatChunk);
  }
  const size_t tail = cols - chunks * kFloatChunk;
  return chunks * m * kFloatChunk + j * tail + (c - chunks * kFloatChunk);
}

// Element index, from the start of row r's group, of row r's column c in
// Layout::kBf16Pairs.
inline size_t Bf16PairIndex(size_t rows, size_t cols, size_t r, size_t c) {
  const size_t first = r / kBf16PairRows * kBf16PairRows;
  const size_t m = std::min(kBf16PairRows, rows - first), j = r - first;
  const size_t pairs = cols / 2;
  if (c < 2 * pairs) return (c / 2 * m + j) * 2 + c % 2;
  return 2 * pairs * m + j;
}

// Row r's weights as f32, out[0, cols), from a matrix in `layout` (not kRowMajor).
inline void DecodeInterleavedRow(DType type, Layout layout, const std::byte* matrix, size_t rows, size_t cols, size_t r,
                                 float* out) {
  if (layout == Layout::kBf16Pairs) {
    const std::byte* group = matrix + r / kBf16PairRows * kBf16PairRows * RowBytes(type, cols);
    for (size_t c = 0; c < cols; ++c) out[c] = LoadAsF32(type, group, Bf16PairIndex(rows, cols, r, c));
    return;
  }
  if (!IsQuantized(type)) {
    const size_t first = r / kFloatGroupRows * kFloatGroupRows;
    const std::byte* group = matrix + first * RowBytes(type, cols);
    for (size_t c = 0; c < cols; ++c) out[c] = LoadAsF32(type, group, InterleavedFloatIndex(type, rows, cols, r, c));
    return;
  }
  const InterleavedGroup group = FindGroup(type, matrix, rows, cols, r);
  const size_t m = group.lanes, blocks = cols / kQuantBlock;
  for (size_t b = 0; b < blocks; ++b) {
    const float scale = F16ToF32(LoadU16(group.scales + b * group.block_bytes + 2 * group.lane));
    const std::byte* quants = group.quants + b * group.block_bytes;
    for (size_t e = 0; e < kQuantBlock; ++e) {
      out[b * kQuantBlock + e] =
          scale * static_cast<float>(StoredQuant(type, quants, m, group.lane, e) - InterleavedZeroPoint(type));
    }
  }
}

// One group of m float rows (elements of E's size) from row-major `from` into `to`.
template <typename E>
void InterleaveFloatGroup(DType type, size_t cols, size_t m, const std::byte* from, std::byte* to) {
  const size_t chunks = cols / kFloatChunk, tail = cols - chunks * kFloatChunk;
  for (size_t j = 0; j < m; ++j) {
    const std::byte* row = from + j * cols * sizeof(E);
    for (size_t c = 0; c < chunks; ++c) {
      std::byte* chunk = to + (c * m + j) * kFloatChunk * sizeof(E);
      E values[kFloatChunk], stored[kFloatChunk];
      std::memcpy(values, row + c * kFloatChunk * sizeof(E), sizeof(values));
      for (size_t e = 0; e < kFloatChunk; ++e) stored[FloatChunkSlot(type, e)] = values[e];
      std::memcpy(chunk, stored, sizeof(stored));
    }
    std::memcpy(to + (chunks * m * kFloatChunk + j * tail) * sizeof(E), row + chunks * kFloatChunk * sizeof(E),
                tail * sizeof(E));
  }
}

// One group of m bf16 rows from row-major `from` into Layout::kBf16Pairs at `to`.
inline void PairBf16Group(size_t cols, size_t m, const std::byte* from, std::byte* to) {
  const size_t pairs = cols / 2;
  for (size_t j = 0; j < m; ++j) {
    const std::byte* row = from + j * cols * 2;
    for (size_t p = 0; p < pairs; ++p) std::memcpy(to + (p * m + j) * 4, row + p * 4, 4);
    if (cols % 2 != 0) std::memcpy(to + (2 * pairs * m + j) * 2, row + (cols - 1) * 2, 2);
  }
}

// Rewrites rows x cols of `type` from row-major order, in place, into
// `layout` (q8_0 and q4_0 rows as GGUF stores them).
inline void InterleaveRows(DType type, Layout layout, size_t rows, size_t cols, std::span<std::byte> matrix) {
  const size_t row_bytes = RowBytes(type, cols);
  const size_t group_rows = GroupRows(type, layout);
  std::vector<std::byte> original(group_rows * row_bytes);
  for (size_t first = 0; first < rows; first += group_rows) {
    const size_t m = std::min(group_rows, rows - first);
    std::byte* base = matrix.data() + first * row_bytes;
    std::memcpy(original.data(), base, m * row_bytes);
    if (layout == Layout::kBf16Pairs) {
      PairBf16Group(cols, m, original.data(), base);
      continue;
    }
    if (type == DType::kF32) {
      InterleaveFloatGroup<uint32_t>(type, cols, m, original.data(), base);
      continue;
    }
    if (!IsQuantized(type)) {
      InterleaveFloatGroup<uint16_t>(type, cols, m, original.data(), base);
      continue;
    }
    const size_t blocks = cols / kQuantBlock, block_bytes = row_bytes / blocks;
    const size_t quant_bytes = InterleavedQuantBytes(type);
    for (size_t j = 0; j < m; ++j) {
      for (size_t b = 0; b < blocks; ++b) {
        const std::byte* block = original.data() + j * row_bytes + b * block_bytes;
        std::byte* group_block = base + b * m * block_bytes;  // m scales, then the quants
        std::memcpy(group_block + 2 * j, block, 2);
        for (size_t chunk = 0; chunk < quant_bytes / 4; ++chunk) {
          std::byte* out = group_block + 2 * m + (chunk * m + j) * 4;
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
