#include "io/mapped_file.h"

#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <algorithm>
#include <cstring>
#include <string>
#include <utility>

#include "hymba/error.h"

namespace hymba {
namespace {

struct FileDescriptor {
  int fd;
  ~FileDescriptor() {
    if (fd >= 0) ::close(fd);
  }
};

}  // namespace

MappedFile::MappedFile(const std::filesystem::path& path, FileAccess access) : path_(path) {
  FileDescriptor file{::open(path.c_str(), O_RDONLY | O_CLOEXEC)};
  if (file.fd < 0) throw Error(path.string() + ": cannot open: " + std::strerror(errno));
  struct stat info {};
  if (::fstat(file.fd, &info) != 0) throw Error(path.string() + ": cannot stat: " + std::strerror(errno));
  if (!S_ISREG(info.st_mode)) throw Error(path.string() + ": not a regular file");
  size_ = static_cast<size_t>(info.st_size);
  if (size_ == 0) return;  // mmap rejects empty files; an empty span is the right view
  if (access == FileAccess::kMap) {
    void* mapped = ::mmap(nullptr, size_, PROT_READ, MAP_PRIVATE, file.fd, 0);
    if (mapped == MAP_FAILED) throw Error(path.string() + ": cannot mmap: " + std::strerror(errno));
    data_ = static_cast<std::byte*>(mapped);
    return;
  }
  void* memory = ::mmap(nullptr, size_, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
  if (memory == MAP_FAILED) {
    throw Error(path.string() + ": cannot allocate " + std::to_string(size_) + " bytes: " + std::strerror(errno));
  }
  data_ = static_cast<std::byte*>(memory);
  loaded_ = true;
  ::madvise(memory, size_, MADV_HUGEPAGE);  // advisory: without THP the copy still works
  auto* out = static_cast<char*>(memory);
  size_t done = 0;
  while (done < size_) {
    const ssize_t got = ::pread(file.fd, out + done, std::min<size_t>(size_ - done, size_t{1} << 26), static_cast<off_t>(done));
    if (got < 0 && errno == EINTR) continue;
    if (got <= 0) {
      const std::string reason = got < 0 ? std::strerror(errno) : "the file shrank while it was read";
      Release();
      throw Error(path.string() + ": read failed: " + reason);
    }
    done += static_cast<size_t>(got);
  }
  ::mprotect(memory, size_, PROT_READ);
}

void MappedFile::Rewrite(const std::function<void(std::span<std::byte>)>& edit) {
  if (size_ == 0) return;
  if (!loaded_) throw Error(path_.string() + ": a mapped file cannot be rewritten in memory");
  if (::mprotect(data_, size_, PROT_READ | PROT_WRITE) != 0) {
    throw Error(path_.string() + ": cannot make the loaded file writable: " + std::strerror(errno));
  }
  struct Reprotect {
    std::byte* memory;
    size_t size;
    ~Reprotect() { ::mprotect(memory, size, PROT_READ); }
  } reprotect{data_, size_};
  edit({data_, size_});
}

MappedFile::MappedFile(MappedFile&& other) noexcept
    : path_(std::move(other.path_)),
      data_(std::exchange(other.data_, nullptr)),
      size_(std::exchange(other.size_, 0)),
      loaded_(std::exchange(other.loaded_, false)) {}

MappedFile& MappedFile::operator=(MappedFile&& other) noexcept {
  if (this != &other) {
    Release();
    path_ = std::move(other.path_);
    data_ = std::exchange(other.data_, nullptr);
    size_ = std::exchange(other.size_, 0);
    loaded_ = std::exchange(other.loaded_, false);
  }
  return *this;
}

MappedFile::~MappedFile() { Release(); }

void MappedFile::Release() {
  if (data_ != nullptr) ::munmap(data_, size_);
  data_ = nullptr;
  size_ = 0;
}

}  // namespace hymba
