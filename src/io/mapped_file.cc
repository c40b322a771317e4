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
  try {
    loaded_ = HugePageBuffer(size_);
  } catch (const Error& error) {
    throw Error(path.string() + ": " + error.what());
  }
  data_ = loaded_.bytes().data();
  auto* out = reinterpret_cast<char*>(data_);
  size_t done = 0;
  while (done < size_) {
    const ssize_t got = ::pread(file.fd, out + done, std::min<size_t>(size_ - done, size_t{1} << 26), static_cast<off_t>(done));
    if (got < 0 && errno == EINTR) continue;
    if (got <= 0) {
      const std::string reason = got < 0 ? std::strerror(errno) : "the file shrank while it was read";
      throw Error(path.string() + ": read failed: " + reason);
    }
    done += static_cast<size_t>(got);
  }
  loaded_.Protect(/*writable=*/false);
}

void MappedFile::Rewrite(const std::function<void(std::span<std::byte>)>& edit) {
  if (size_ == 0) return;
  if (loaded_.bytes().empty()) throw Error(path_.string() + ": a mapped file cannot be rewritten in memory");
  if (!loaded_.Protect(/*writable=*/true)) {
    throw Error(path_.string() + ": cannot make the loaded file writable: " + std::strerror(errno));
  }
  struct Reprotect {
    const HugePageBuffer& memory;
    ~Reprotect() { memory.Protect(/*writable=*/false); }
  } reprotect{loaded_};
  edit(loaded_.bytes());
}

MappedFile::MappedFile(MappedFile&& other) noexcept
    : path_(std::move(other.path_)),
      loaded_(std::move(other.loaded_)),
      data_(std::exchange(other.data_, nullptr)),
      size_(std::exchange(other.size_, 0)) {}

MappedFile& MappedFile::operator=(MappedFile&& other) noexcept {
  if (this != &other) {
    Unmap();
    path_ = std::move(other.path_);
    loaded_ = std::move(other.loaded_);
    data_ = std::exchange(other.data_, nullptr);
    size_ = std::exchange(other.size_, 0);
  }
  return *this;
}

MappedFile::~MappedFile() { Unmap(); }

void MappedFile::Unmap() {
  if (data_ != nullptr && loaded_.bytes().empty()) ::munmap(data_, size_);
  data_ = nullptr;
  size_ = 0;
}

}  // namespace hymba
