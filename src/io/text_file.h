// Whole small files (configs, JSON indexes, tokenizer models) read into
// memory, with their size checked before anything is allocated.
#pragma once

#include <cstddef>
#include <filesystem>
#include <string>

namespace hymba {

// Far above any real config, index, template or SentencePiece model (a
// 256k-piece vocabulary is about 4 MB).
constexpr size_t kMaxSmallFileBytes = size_t{64} << 20;

// The bytes of `path`; an error names the file when it cannot be read or is
// larger than max_bytes.
std::string ReadSmallFile(const std::filesystem::path& path, size_t max_bytes = kMaxSmallFileBytes);

}  // namespace hymba
