#include "io/mapped_file.h"

#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <atomic>
#include <cerrno>
#include <cstring>

namespace pg::io {
namespace {

// The Status for a failed system call on `path`: "what PATH: strerror".
Status errno_status(int err, const std::string& what, const std::string& path) {
  std::string message = what + " " + path + ": " + std::strerror(err);
  switch (err) {
    case ENOENT:
    case ENOTDIR: return not_found(std::move(message));
    case EACCES:
    case EPERM:
    case EISDIR:
    case ELOOP:
    case ENAMETOOLONG: return invalid_argument(std::move(message));
    case EIO: return data_loss(std::move(message));
    default: return internal_error(std::move(message));
  }
}

// Closes a file descriptor when it goes out of scope.
class FdCloser {
 public:
  explicit FdCloser(int fd) : fd_(fd) {}
  ~FdCloser() {
    if (fd_ >= 0) ::close(fd_);
  }
  FdCloser(const FdCloser&) = delete;
  FdCloser& operator=(const FdCloser&) = delete;
  // Closes now, reporting the error of close(2); the destructor then does nothing.
  int close_now() {
    const int fd = fd_;
    fd_ = -1;
    return ::close(fd);
  }

 private:
  int fd_;
};

// Opens `path` for reading and checks that it is a regular file; returns the fd and size.
Status open_regular(const std::string& path, int& fd, size_t& size) {
  fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) return errno_status(errno, "cannot open", path);
  struct stat st;
  if (::fstat(fd, &st) != 0) {
    const int err = errno;
    ::close(fd);
    fd = -1;
    return errno_status(err, "cannot stat", path);
  }
  if (!S_ISREG(st.st_mode)) {
    ::close(fd);
    fd = -1;
    if (S_ISDIR(st.st_mode)) return invalid_argument(path + ": is a directory, not a file");
    return invalid_argument(path + ": not a regular file");
  }
  size = static_cast<size_t>(st.st_size);
  return Status::Ok();
}

// Writes all of [data, data + size) to fd, retrying short writes and EINTR.
bool write_all(int fd, const void* data, size_t size) {
  const auto* p = static_cast<const uint8_t*>(data);
  while (size > 0) {
    const ssize_t n = ::write(fd, p, size);
    if (n < 0) {
      if (errno == EINTR) continue;
      return false;
    }
    p += n;
    size -= static_cast<size_t>(n);
  }
  return true;
}

std::string parent_dir(const std::string& path) {
  const size_t slash = path.rfind('/');
  if (slash == std::string::npos) return ".";
  if (slash == 0) return "/";
  return path.substr(0, slash);
}

}  // namespace

Result<std::shared_ptr<MappedFile>> MappedFile::open(const std::string& path) {
  int fd = -1;
  size_t size = 0;
  PG_RETURN_IF_ERROR(open_regular(path, fd, size));
  FdCloser closer(fd);
  std::shared_ptr<MappedFile> file(new MappedFile());
  file->path_ = path;
  file->size_ = size;
  if (size == 0) return file;  // mmap of length 0 fails; an empty file has no mapping
  void* p = ::mmap(nullptr, size, PROT_READ, MAP_PRIVATE, fd, 0);
  if (p == MAP_FAILED) return errno_status(errno, "cannot map", path);
  file->data_ = static_cast<const uint8_t*>(p);
  return file;  // the mapping stays valid after the descriptor is closed
}

MappedFile::~MappedFile() {
  if (data_ != nullptr) ::munmap(const_cast<uint8_t*>(data_), size_);
}

Result<std::string> read_file(const std::string& path) {
  int fd = -1;
  size_t size = 0;
  PG_RETURN_IF_ERROR(open_regular(path, fd, size));
  FdCloser closer(fd);
  std::string out;
  out.reserve(size);
  char buf[1 << 16];
  while (true) {
    const ssize_t n = ::read(fd, buf, sizeof(buf));
    if (n < 0) {
      if (errno == EINTR) continue;
      return errno_status(errno, "cannot read", path);
    }
    if (n == 0) break;
    out.append(buf, static_cast<size_t>(n));
  }
  return out;
}

Status write_file_atomic(const std::string& path, const void* data, size_t size) {
  return write_file_atomic_parts(path, {ConstBuffer{data, size}});
}

Status write_file_atomic_parts(const std::string& path, const std::vector<ConstBuffer>& parts) {
  if (path.empty() || path.back() == '/') {
    return invalid_argument("cannot write '" + path + "': not a file name");
  }
  // A unique temporary name in the same folder, so that rename(2) is atomic.
  static std::atomic<uint64_t> counter{0};
  std::string tmp;
  int fd = -1;
  for (int attempt = 0; attempt < 100 && fd < 0; ++attempt) {
    tmp = path + ".tmp." + std::to_string(::getpid()) + "." + std::to_string(counter++);
    fd = ::open(tmp.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0666);
    if (fd < 0 && errno != EEXIST) return errno_status(errno, "cannot create", tmp);
  }
  if (fd < 0) return internal_error("cannot create a temporary file next to " + path);
  FdCloser closer(fd);
  auto fail = [&](const char* what) {
    const int err = errno;
    ::unlink(tmp.c_str());
    return errno_status(err, what, tmp);
  };
  for (const ConstBuffer& part : parts) {
    if (part.size > 0 && !write_all(fd, part.data, part.size)) return fail("cannot write");
  }
  if (::fsync(fd) != 0) return fail("cannot sync");
  if (closer.close_now() != 0) return fail("cannot close");
  if (::rename(tmp.c_str(), path.c_str()) != 0) {
    const int err = errno;
    ::unlink(tmp.c_str());
    return errno_status(err, "cannot rename " + tmp + " to", path);
  }
  // Make the rename itself durable; a failure here does not undo the write.
  const int dir_fd = ::open(parent_dir(path).c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (dir_fd >= 0) {
    ::fsync(dir_fd);
    ::close(dir_fd);
  }
  return Status::Ok();
}

}  // namespace pg::io
