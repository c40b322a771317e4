// Anonymous memory backed by transparent huge pages where the kernel allows:
// what the weights of a loaded model live in (io/mapped_file.h), and what
// anything that stands in for them in a measurement must live in too. A
// decoding step streams gigabytes; with 4 KB pages every page costs a TLB
// miss, which cut a single thread's read rate by a fifth to a half here.
#pragma once

#include <sys/mman.h>

#include <cerrno>
#include <cstddef>
#include <cstring>
#include <span>
#include <string>
#include <utility>

#include "hymba/error.h"

namespace hymba {

class HugePageBuffer {
 public:
  HugePageBuffer() = default;
  // Zero-filled, readable and writable.
  explicit HugePageBuffer(size_t bytes) : size_(bytes) {
    if (bytes == 0) return;
    void* memory = ::mmap(nullptr, bytes, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (memory == MAP_FAILED) {
      size_ = 0;
      throw Error("cannot allocate " + std::to_string(bytes) + " bytes: " + std::strerror(errno));
    }
    data_ = static_cast<std::byte*>(memory);
    ::madvise(memory, bytes, MADV_HUGEPAGE);  // advisory: without THP the memory still works
  }
  HugePageBuffer(HugePageBuffer&& other) noexcept
      : data_(std::exchange(other.data_, nullptr)), size_(std::exchange(other.size_, 0)) {}
  HugePageBuffer& operator=(HugePageBuffer&& other) noexcept {
    if (this != &other) {
      Release();
      data_ = std::exchange(other.data_, nullptr);
      size_ = std::exchange(other.size_, 0);
    }
    return *this;
  }
  HugePageBuffer(const HugePageBuffer&) = delete;
  HugePageBuffer& operator=(const HugePageBuffer&) = delete;
  ~HugePageBuffer() { Release(); }

  std::span<std::byte> bytes() const { return {data_, size_}; }
  // Read-only (or read-write again) for the whole buffer.
  bool Protect(bool writable) const {
    return size_ == 0 || ::mprotect(data_, size_, writable ? PROT_READ | PROT_WRITE : PROT_READ) == 0;
  }

 private:
  void Release() {
    if (data_ != nullptr) ::munmap(data_, size_);
    data_ = nullptr;
    size_ = 0;
  }
  std::byte* data_ = nullptr;
  size_t size_ = 0;
};

}  // namespace hymba
