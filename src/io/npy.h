// NumPy .npy files of float32 in C order (format version 1.0).
#pragma once

#include <cstdint>
#include <filesystem>
#include <span>
#include <vector>

namespace hymba {

struct NpyArray {
  std::vector<int64_t> shape;
  std::vector<float> data;
};

// Writes through a temporary file renamed into place, so a failure never
// leaves a half-written file or destroys an existing one.
void WriteNpyF32(const std::filesystem::path& path, std::span<const int64_t> shape, std::span<const float> data);
NpyArray ReadNpyF32(const std::filesystem::path& path);

}  // namespace hymba
