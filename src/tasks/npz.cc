#include "tasks/npz.h"

#include <zip.h>

#include <memory>
#include <vector>

namespace pg::tasks {
namespace {

struct ArchiveCloser {
  void operator()(zip_t* z) const { zip_discard(z); }
};
struct FileCloser {
  void operator()(zip_file_t* f) const { zip_fclose(f); }
};

std::string zip_error_text(int code) {
  zip_error_t e;
  zip_error_init_with_code(&e, code);
  std::string s = zip_error_strerror(&e);
  zip_error_fini(&e);
  return s;
}

}  // namespace

Result<std::map<std::string, io::NpyArray>> read_npz(
    const std::string& path, const std::function<bool(const std::string&)>& want,
    const NpzLimits& limits) {
  int err = 0;
  std::unique_ptr<zip_t, ArchiveCloser> z(zip_open(path.c_str(), ZIP_RDONLY, &err));
  if (!z) {
    if (err == ZIP_ER_NOENT || err == ZIP_ER_OPEN) {
      return not_found(path + ": cannot open the .npz file (" + zip_error_text(err) + ")");
    }
    return data_loss(path + ": not a readable .npz (zip) archive: " + zip_error_text(err));
  }
  const zip_int64_t n = zip_get_num_entries(z.get(), 0);
  std::map<std::string, io::NpyArray> out;
  uint64_t total = 0;
  for (zip_int64_t i = 0; i < n; ++i) {
    zip_stat_t st;
    zip_stat_init(&st);
    if (zip_stat_index(z.get(), static_cast<zip_uint64_t>(i), 0, &st) != 0 ||
        !(st.valid & ZIP_STAT_NAME) || !(st.valid & ZIP_STAT_SIZE)) {
      return data_loss(path + ": entry " + std::to_string(i) +
                       " of the archive is unreadable: " + zip_strerror(z.get()));
    }
    std::string key = st.name;
    if (key.size() < 4 || key.compare(key.size() - 4, 4, ".npy") != 0) continue;  // not an array
    key.resize(key.size() - 4);
    if (want && !want(key)) continue;
    const std::string where = path + ": " + st.name;
    if (out.count(key) != 0) return data_loss(where + ": the archive holds '" + key + "' twice");
    if (st.size > limits.max_entry_bytes || total + st.size > limits.max_total_bytes) {
      return out_of_range(where + ": " + std::to_string(st.size) +
                          " bytes uncompressed is over the limit");
    }
    total += st.size;
    std::unique_ptr<zip_file_t, FileCloser> f(
        zip_fopen_index(z.get(), static_cast<zip_uint64_t>(i), 0));
    if (!f) return data_loss(where + ": cannot open the entry: " + zip_strerror(z.get()));
    std::vector<uint8_t> bytes(st.size);
    zip_uint64_t got = 0;
    while (got < st.size) {
      const zip_int64_t r = zip_fread(f.get(), bytes.data() + got, st.size - got);
      if (r < 0) return data_loss(where + ": damaged entry: " + zip_file_strerror(f.get()));
      if (r == 0) break;
      got += static_cast<zip_uint64_t>(r);
    }
    if (got != st.size) {
      return data_loss(where + ": the entry ends after " + std::to_string(got) + " of " +
                       std::to_string(st.size) + " bytes");
    }
    PG_ASSIGN_OR_RETURN(io::NpyArray a, io::decode_npy(bytes.data(), bytes.size(), where));
    out.emplace(std::move(key), std::move(a));
  }
  return out;
}

}  // namespace pg::tasks
