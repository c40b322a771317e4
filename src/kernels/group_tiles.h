// The loop nest shared by the matrix kernels over weights interleaved in
// groups of rows (core/interleaved.h): blocks of groups whose weights fit
// in half of a 1 MB L2; within a block, token tiles outermost, so a tile's
// activations stay in L1 while the block's weights stream from L2.
#pragma once

#include <algorithm>
#include <cstddef>

#include "core/mat_view.h"

namespace hymba {

// Weights of a block of groups, as the token tiles reread them, fit in half
// of a 1 MB L2.
constexpr size_t kL2BlockBytes = size_t{512} << 10;

// Calls visit(group, t0, tokens) for groups [group_begin, group_end) and
// token tiles [t0, t0 + tokens) of n tokens, tile_tokens at a time. The
// weights of a group are one run of memory, which the hardware prefetcher
// follows (software prefetching measured no better).
template <typename Visit>
void ForEachGroupTile(const MatView& w, size_t n, size_t tile_tokens, size_t group_begin, size_t group_end,
                      const Visit& visit) {
  const size_t group_bytes = GroupRows(w.type, w.layout) * RowBytes(w.type, w.cols);
  const size_t block_groups = std::max<size_t>(1, kL2BlockBytes / std::max<size_t>(group_bytes, 1));
  for (size_t first = group_begin; first < group_end; first += block_groups) {
    const size_t last = std::min(group_end, first + block_groups);
    for (size_t t0 = 0; t0 < n; t0 += tile_tokens) {
      const size_t tokens = std::min(tile_tokens, n - t0);
      for (size_t g = first; g < last; ++g) visit(g, t0, tokens);
    }
  }
}

// The float kernels' register tile: a group of 4 rows by up to 6 tokens, 24
// accumulators of AVX-512's 32 vector registers.
constexpr size_t kTileTokens = 6;

}  // namespace hymba
