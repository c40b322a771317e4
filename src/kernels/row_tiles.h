// The loop nest shared by the tiled f32 and bf16 matrix kernels: blocks of
// rows whose weights fit in half of a 1 MB L2; within a block, token tiles
// outermost, so a tile's activations stay in L1 while the block's weights
// stream from L2; register tiles of kTileRows x kTileTokens outputs.
#pragma once

#include <algorithm>
#include <cstddef>

#include "core/mat_view.h"

namespace hymba {

// 4 x 6 accumulators plus 4 weight and 1 activation vectors fit AVX-512's 32
// registers; weights are loaded once per tile and reused by every token of it.
constexpr size_t kTileRows = 4;
constexpr size_t kTileTokens = 6;

// Weights of a block of rows, as the token tiles reread them, fit in half of
// a 1 MB L2 (the int8 kernels block their row groups the same way).
constexpr size_t kL2BlockBytes = size_t{512} << 10;

// Rows [row_begin, row_end) of y = W x for the n rows of x (w.cols values of
// type X each), y row t at y + t * y_stride. tile(weight_rows, token_rows,
// tokens, first_pass, out) fills out[r * kTileTokens + t] for r < kTileRows
// and t < tokens; a short last tile repeats its last row and its last token.
// first_pass: the first token tile over a block, whose weights come from
// memory (later tiles find them in L2, where prefetching them again cost
// a fifth of the prompt's speed).
template <typename X, typename Tile>
void ForEachRowTile(const MatView& w, const X* x, size_t n, float* y, size_t y_stride, size_t row_begin,
                    size_t row_end, const Tile& tile) {
  const size_t block_rows =
      std::max(kTileRows, kL2BlockBytes / std::max<size_t>(RowBytes(w.type, w.cols), 1) / kTileRows * kTileRows);
  float out[kTileRows * kTileTokens];
  for (size_t block = row_begin; block < row_end; block += block_rows) {
    const size_t block_end = std::min(row_end, block + block_rows);
    for (size_t t0 = 0; t0 < n; t0 += kTileTokens) {
      const size_t tokens = std::min(kTileTokens, n - t0);
      const X* token_rows[kTileTokens];
      for (size_t t = 0; t < kTileTokens; ++t) token_rows[t] = x + (t0 + std::min(t, tokens - 1)) * w.cols;
      for (size_t r0 = block; r0 < block_end; r0 += kTileRows) {
        const size_t rows = std::min(kTileRows, block_end - r0);
        const std::byte* weight_rows[kTileRows];
        for (size_t r = 0; r < kTileRows; ++r) weight_rows[r] = w.Row(r0 + std::min(r, rows - 1));
        tile(weight_rows, token_rows, tokens, t0 == 0, out);
        for (size_t t = 0; t < tokens; ++t) {
          for (size_t r = 0; r < rows; ++r) y[(t0 + t) * y_stride + r0 + r] = out[r * kTileTokens + t];
        }
      }
    }
  }
}

}  // namespace hymba
