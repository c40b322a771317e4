// Shared by the fuzz targets: readers that take a path get the input written
// to a file in a directory of their own, and inputs that need several parts
// split at NUL bytes.
#pragma once

#include <unistd.h>

#include <cstddef>
#include <cstdint>
#include <filesystem>
#include <fstream>
#include <string>
#include <string_view>
#include <system_error>
#include <vector>

namespace hymba::fuzz {

// A directory for one fuzzing process, removed at exit.
class ScratchDir {
 public:
  ScratchDir()
      : path_(std::filesystem::temp_directory_path() / ("hymba-fuzz-" + std::to_string(::getpid()))) {
    std::filesystem::create_directories(path_);
  }
  ~ScratchDir() {
    std::error_code ignored;
    std::filesystem::remove_all(path_, ignored);
  }
  ScratchDir(const ScratchDir&) = delete;
  ScratchDir& operator=(const ScratchDir&) = delete;

  const std::filesystem::path& path() const { return path_; }

  std::filesystem::path Write(const std::string& name, std::string_view bytes) const {
    const std::filesystem::path file = path_ / name;
    std::ofstream out(file, std::ios::binary | std::ios::trunc);
    out.write(bytes.data(), static_cast<std::streamsize>(bytes.size()));
    return file;
  }

 private:
  std::filesystem::path path_;
};

inline std::string_view AsText(const uint8_t* data, size_t size) {
  return {reinterpret_cast<const char*>(data), size};
}

// The input cut at its first `parts - 1` NUL bytes; missing parts are empty.
inline std::vector<std::string_view> SplitAtNul(std::string_view input, size_t parts) {
  std::vector<std::string_view> pieces;
  while (pieces.size() + 1 < parts) {
    const size_t nul = input.find('\0');
    if (nul == std::string_view::npos) break;
    pieces.push_back(input.substr(0, nul));
    input.remove_prefix(nul + 1);
  }
  pieces.push_back(input);
  pieces.resize(parts);
  return pieces;
}

// Reads every byte of a span the way a kernel would, so that a tensor whose
// bytes lie outside the mapped file faults here.
inline uint8_t TouchEveryPage(const std::byte* data, size_t size) {
  uint8_t sum = 0;
  for (size_t i = 0; i < size; i += 4096) sum = static_cast<uint8_t>(sum + std::to_integer<uint8_t>(data[i]));
  if (size > 0) sum = static_cast<uint8_t>(sum + std::to_integer<uint8_t>(data[size - 1]));
  return sum;
}

}  // namespace hymba::fuzz
