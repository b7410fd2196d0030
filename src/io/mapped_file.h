// Read-only memory-mapped files.
#pragma once

#include <cstddef>
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "base/status.h"

namespace pg::io {

class MappedFile {
 public:
  // Maps the whole file read-only. Errors name the path.
  static Result<std::shared_ptr<MappedFile>> open(const std::string& path);
  ~MappedFile();
  MappedFile(const MappedFile&) = delete;
  MappedFile& operator=(const MappedFile&) = delete;

  const uint8_t* data() const { return data_; }
  size_t size() const { return size_; }
  const std::string& path() const { return path_; }

 private:
  MappedFile() = default;
  std::string path_;
  const uint8_t* data_ = nullptr;
  size_t size_ = 0;
};

// Reads a whole (small) file into a string.
Result<std::string> read_file(const std::string& path);

// Writes data to path atomically (a temporary file in the same folder, then rename).
Status write_file_atomic(const std::string& path, const void* data, size_t size);

// One piece of a file written by write_file_atomic_parts.
struct ConstBuffer {
  const void* data = nullptr;
  size_t size = 0;
};

// Like write_file_atomic, for a file made of several buffers written in order (no copy
// into one buffer: large checkpoints are written straight from their tensors).
Status write_file_atomic_parts(const std::string& path, const std::vector<ConstBuffer>& parts);

}  // namespace pg::io
