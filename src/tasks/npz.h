// NumPy .npz archives (a zip of .npy files, stored or deflated), read with libzip.
#pragma once

#include <functional>
#include <map>
#include <string>

#include "base/status.h"
#include "io/npy.h"

namespace pg::tasks {

struct NpzLimits {
  uint64_t max_entry_bytes = uint64_t{4} << 30;  // one uncompressed .npy
  uint64_t max_total_bytes = uint64_t{16} << 30;
};

// Reads the arrays of `path`, keyed by entry name without ".npy". `want(key)` picks which
// entries are read (nullptr: all). Errors name the file and the entry: not a zip archive,
// a damaged entry, an entry that is not a valid .npy, a repeated key.
Result<std::map<std::string, io::NpyArray>> read_npz(
    const std::string& path, const std::function<bool(const std::string&)>& want = nullptr,
    const NpzLimits& limits = {});

}  // namespace pg::tasks
