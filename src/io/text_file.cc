#include "io/text_file.h"

#include <fstream>
#include <iterator>
#include <system_error>

#include "hymba/error.h"

namespace hymba {

std::string ReadSmallFile(const std::filesystem::path& path, size_t max_bytes) {
  std::error_code error;
  const uintmax_t size = std::filesystem::file_size(path, error);
  if (error) throw Error(path.string() + ": cannot open: " + error.message());
  if (size > max_bytes) {
    throw Error(path.string() + ": " + std::to_string(size) + " bytes is too large for this file (at most " +
                std::to_string(max_bytes) + ")");
  }
  std::ifstream in(path, std::ios::binary);
  if (!in) throw Error(path.string() + ": cannot open");
  std::string bytes(static_cast<size_t>(size), '\0');
  in.read(bytes.data(), static_cast<std::streamsize>(bytes.size()));
  if (in.gcount() != static_cast<std::streamsize>(bytes.size())) throw Error(path.string() + ": read failed");
  return bytes;
}

}  // namespace hymba
