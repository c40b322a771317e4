// Non-owning typed views over weights that live in a memory-mapped checkpoint.
#pragma once

#include <cstddef>
#include <span>

#include "core/dtype.h"

namespace hymba {

// Row-major [rows, cols] matrix in its stored type; kernels decode it on the fly.
struct MatView {
  DType type = DType::kF32;
  const std::byte* data = nullptr;
  size_t rows = 0;
  size_t cols = 0;

  bool empty() const { return data == nullptr; }
  const std::byte* Row(size_t r) const { return data + r * RowBytes(type, cols); }
  void DecodeRow(size_t r, std::span<float> out) const {
    const std::byte* row = Row(r);
    for (size_t c = 0; c < cols; ++c) out[c] = LoadAsF32(type, row, c);
  }
};

}  // namespace hymba
