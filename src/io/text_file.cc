#include "io/text_file.h"

#include <fstream>
#include <system_error>

#include "hymba/error.h"

namespace hymba {

std::string ReadSmallFile(const std::filesystem::path& path, size_t max_bytes) {
  auto too_large = [&](uintmax_t size) {
    return Error(path.string() + ": " + std::to_string(size) + " bytes or more is too large for this file (at most " +
                 std::to_string(max_bytes) + ")");
  };
  // A regular file's size is known before reading; a pipe is read until it
  // ends or passes the limit.
  std::error_code error;
  if (std::filesystem::is_directory(path, error)) throw Error(path.string() + ": is a directory, not a file");
  if (std::filesystem::is_regular_file(path, error)) {
    const uintmax_t size = std::filesystem::file_size(path, error);
    if (!error && size > max_bytes) throw too_large(size);
  }
  std::ifstream in(path, std::ios::binary);
  if (!in) throw Error(path.string() + ": cannot open");
  std::string bytes;
  char chunk[1 << 16];
  while (in.read(chunk, sizeof chunk) || in.gcount() > 0) {
    bytes.append(chunk, static_cast<size_t>(in.gcount()));
    if (bytes.size() > max_bytes) throw too_large(bytes.size());
  }
  if (in.bad()) throw Error(path.string() + ": read failed");
  return bytes;
}

}  // namespace hymba
