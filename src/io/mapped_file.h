// A whole file in read-only memory, released on destruction.
#pragma once

#include <cstddef>
#include <filesystem>
#include <functional>
#include <span>

#include "core/huge_page_buffer.h"

namespace hymba {

// kMap maps the file lazily (for reading a few fields of a big file). kLoad
// reads it into private anonymous memory backed by transparent huge pages:
// weights are streamed from memory at every decode step, and mapped page-cache
// pages (mostly 4 KB, and evicted and re-read at the kernel's will) made the
// decode speed vary up to fivefold between runs in measurements here, while
// huge-page memory keeps it at the bandwidth limit.
enum class FileAccess { kMap, kLoad };

class MappedFile {
 public:
  explicit MappedFile(const std::filesystem::path& path, FileAccess access = FileAccess::kLoad);
  MappedFile(MappedFile&& other) noexcept;
  MappedFile& operator=(MappedFile&& other) noexcept;
  MappedFile(const MappedFile&) = delete;
  MappedFile& operator=(const MappedFile&) = delete;
  ~MappedFile();

  std::span<const std::byte> bytes() const { return {data_, size_}; }
  // Lets `edit` change a loaded (kLoad) file's bytes in place; they are
  // read-only at all other times. Mapped files cannot be edited.
  void Rewrite(const std::function<void(std::span<std::byte>)>& edit);
  const std::filesystem::path& path() const { return path_; }

 private:
  void Unmap();
  std::filesystem::path path_;
  HugePageBuffer loaded_;      // kLoad: the file's bytes
  std::byte* data_ = nullptr;  // the bytes, in loaded_ or mapped (kMap); written only inside Rewrite
  size_t size_ = 0;
};

}  // namespace hymba
