#include "io/npy.h"

#include <bit>
#include <cstring>
#include <fstream>
#include <sstream>
#include <string>

#include "hymba/error.h"

namespace hymba {
namespace {

static_assert(std::endian::native == std::endian::little, "npy I/O assumes a little-endian host");

constexpr char kMagic[] = "\x93NUMPY";

}  // namespace

void WriteNpyF32(const std::filesystem::path& path, std::span<const int64_t> shape, std::span<const float> data) {
  std::string dims;
  for (int64_t dim : shape) dims += std::to_string(dim) + ", ";
  if (shape.size() > 1) dims.resize(dims.size() - 1);  // "(3, 4)" but "(3,)"
  std::string header = "{'descr': '<f4', 'fortran_order': False, 'shape': (" + dims + "), }";
  const size_t unpadded = 10 + header.size() + 1;
  header.append((64 - unpadded % 64) % 64, ' ');
  header += '\n';

  std::filesystem::path temporary = path;
  temporary += ".tmp";
  {
    std::ofstream out(temporary, std::ios::binary | std::ios::trunc);
    if (!out) throw Error(path.string() + ": cannot create output file");
    out.write(kMagic, 6);
    const char version[2] = {1, 0};
    out.write(version, 2);
    const uint16_t header_len = static_cast<uint16_t>(header.size());
    out.write(reinterpret_cast<const char*>(&header_len), 2);
    out.write(header.data(), static_cast<std::streamsize>(header.size()));
    out.write(reinterpret_cast<const char*>(data.data()), static_cast<std::streamsize>(data.size_bytes()));
    out.close();
    if (!out) {
      std::filesystem::remove(temporary);
      throw Error(path.string() + ": write failed");
    }
  }
  std::error_code error;
  std::filesystem::rename(temporary, path, error);
  if (error) {
    std::filesystem::remove(temporary);
    throw Error(path.string() + ": cannot move output into place: " + error.message());
  }
}

NpyArray ReadNpyF32(const std::filesystem::path& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) throw Error(path.string() + ": cannot open");
  char prefix[10];
  if (!in.read(prefix, 10) || std::memcmp(prefix, kMagic, 6) != 0 || prefix[6] != 1) {
    throw Error(path.string() + ": not a version 1 .npy file");
  }
  uint16_t header_len;
  std::memcpy(&header_len, prefix + 8, 2);
  std::string header(header_len, '\0');
  if (!in.read(header.data(), header_len)) throw Error(path.string() + ": truncated header");
  if (header.find("'descr': '<f4'") == std::string::npos || header.find("'fortran_order': False") == std::string::npos) {
    throw Error(path.string() + ": expected little-endian float32 in C order, header " + header);
  }
  const size_t shape_start = header.find("'shape': (");
  const size_t shape_end = header.find(')', shape_start);
  if (shape_start == std::string::npos || shape_end == std::string::npos) {
    throw Error(path.string() + ": no shape in header");
  }
  NpyArray array;
  size_t count = 1;
  std::istringstream dims(header.substr(shape_start + 10, shape_end - shape_start - 10));
  for (std::string dim; std::getline(dims, dim, ',');) {
    if (dim.find_first_not_of(' ') == std::string::npos) continue;  // "(3,)"
    array.shape.push_back(std::stoll(dim));
    count *= static_cast<size_t>(array.shape.back());
  }
  array.data.resize(count);
  if (!in.read(reinterpret_cast<char*>(array.data.data()), static_cast<std::streamsize>(count * sizeof(float)))) {
    throw Error(path.string() + ": truncated data");
  }
  return array;
}

}  // namespace hymba
