#include "io/safetensors.h"

#include <sys/stat.h>

#include <bit>
#include <nlohmann/json.hpp>
#include <set>
#include <utility>

namespace pg::io {
namespace {

using nlohmann::json;

static_assert(std::endian::native == std::endian::little,
              "safetensors data is little-endian; big-endian hosts are not supported");

constexpr uint64_t kMaxHeaderBytes = 100ull << 20;  // 100 MB, as in the reference reader
constexpr const char* kIndexName = "model.safetensors.index.json";
constexpr const char* kSingleName = "model.safetensors";

std::string num(uint64_t v) { return std::to_string(v); }

// A JSON value for an error message, shortened. Only flat values are printed (dump is
// recursive, and a hostile header may nest deeply).
std::string brief(const json& v) {
  bool flat = v.is_primitive() || (v.is_array() && v.size() <= 16);
  if (v.is_array()) {
    for (const json& e : v) flat = flat && e.is_primitive();
  }
  if (!flat) return std::string("a JSON ") + v.type_name() + " of " + num(v.size()) + " items";
  std::string s = v.dump(-1, ' ', false, json::error_handler_t::replace);
  if (s.size() > 60) s = s.substr(0, 57) + "...";
  return s;
}

// Reads a JSON integer that must be >= 0 into `out`; false for any other value.
bool get_non_negative(const json& v, uint64_t& out) {
  if (v.is_number_unsigned()) {
    out = v.get<uint64_t>();
    return true;
  }
  if (v.is_number_integer() && v.get<int64_t>() >= 0) {
    out = static_cast<uint64_t>(v.get<int64_t>());
    return true;
  }
  return false;
}

// Validates one tensor entry of the header and fills `view` (data not yet set) and `begin`.
Status parse_entry(const std::string& where, const json& entry, uint64_t data_size,
                   TensorView& view, uint64_t& begin) {
  if (!entry.is_object()) {
    return data_loss(where + ": entry is not a JSON object but " + brief(entry));
  }
  for (const char* key : {"dtype", "shape", "data_offsets"}) {
    if (!entry.contains(key)) return data_loss(where + ": entry has no \"" + key + "\"");
  }
  const json& dtype = entry["dtype"];
  if (!dtype.is_string()) return data_loss(where + ": dtype is not a string but " + brief(dtype));
  const auto parsed = dtype_from_name(dtype.get<std::string>());
  if (!parsed) {
    return unimplemented(where + ": unknown dtype '" + dtype.get<std::string>() +
                         "' (known: F32, BF16, F16, F64, I64, I32, I16, I8, U8, BOOL)");
  }
  view.dtype = *parsed;

  const json& shape = entry["shape"];
  if (!shape.is_array()) return data_loss(where + ": shape is not an array but " + brief(shape));
  // numel * dtype size, checked for overflow; bounded by int64 so that numel() is exact.
  uint64_t nbytes = dtype_size(view.dtype);
  uint64_t numel = 1;
  view.shape.clear();
  for (size_t i = 0; i < shape.size(); ++i) {
    uint64_t d = 0;
    if (!get_non_negative(shape[i], d)) {
      return data_loss(where + ": shape " + brief(shape) + ": dimension " + num(i) + " (" +
                       brief(shape[i]) + ") is not a non-negative integer");
    }
    if (d > static_cast<uint64_t>(INT64_MAX) || __builtin_mul_overflow(numel, d, &numel) ||
        numel > static_cast<uint64_t>(INT64_MAX) || __builtin_mul_overflow(nbytes, d, &nbytes)) {
      return out_of_range(where + ": shape " + brief(shape) + " has too many elements");
    }
    view.shape.push_back(static_cast<int64_t>(d));
  }

  const json& offsets = entry["data_offsets"];
  uint64_t end = 0;
  if (!offsets.is_array() || offsets.size() != 2 || !get_non_negative(offsets[0], begin) ||
      !get_non_negative(offsets[1], end)) {
    return data_loss(where + ": data_offsets " + brief(offsets) +
                     " is not a pair of non-negative integers");
  }
  const std::string range = "data_offsets [" + num(begin) + ", " + num(end) + "]";
  if (begin > end) return data_loss(where + ": " + range + " begins after it ends");
  if (end > data_size) {
    return data_loss(where + ": " + range + " end past the end of the data (" + num(data_size) +
                     " bytes); the file may be truncated");
  }
  if (end - begin != nbytes) {
    return data_loss(where + ": " + range + " span " + num(end - begin) + " bytes, but " +
                     dtype_name(view.dtype) + " " + shape_to_string(view.shape) + " needs " +
                     num(nbytes));
  }
  return Status::Ok();
}

bool path_exists(const std::string& path, bool* is_dir = nullptr) {
  struct stat st;
  if (::stat(path.c_str(), &st) != 0) return false;
  if (is_dir != nullptr) *is_dir = S_ISDIR(st.st_mode);
  return true;
}

std::string join(const std::string& dir, const std::string& name) {
  if (dir.empty()) return name;
  return dir.back() == '/' ? dir + name : dir + "/" + name;
}

// A shard name from an index must name a file in the checkpoint folder itself.
bool plain_file_name(const std::string& name) {
  return !name.empty() && name != "." && name != ".." && name.find('/') == std::string::npos &&
         name.find('\\') == std::string::npos && name.find('\0') == std::string::npos &&
         name.find("..") == std::string::npos;
}

}  // namespace

Result<SafetensorsFile> SafetensorsFile::open(const std::string& path) {
  SafetensorsFile out;
  PG_ASSIGN_OR_RETURN(out.file_, MappedFile::open(path));
  const uint8_t* bytes = out.file_->data();
  const uint64_t size = out.file_->size();
  if (size < 8) {
    return data_loss(path + ": file is " + num(size) +
                     " bytes, too short for a safetensors file (at least 8)");
  }
  uint64_t n = 0;
  for (int i = 7; i >= 0; --i) n = (n << 8) | bytes[i];
  if (n > kMaxHeaderBytes) {
    return out_of_range(path + ": header length " + num(n) + " exceeds the limit of " +
                        num(kMaxHeaderBytes) + " bytes; this is not a safetensors file");
  }
  if (n > size - 8) {
    return data_loss(path + ": header length " + num(n) + " exceeds the " + num(size - 8) +
                     " bytes after the length field; the file is truncated or not safetensors");
  }
  const char* text = reinterpret_cast<const char*>(bytes + 8);
  json header;
  try {
    header = json::parse(text, text + n);
  } catch (const json::exception& e) {
    return data_loss(path + ": header is not valid JSON: " + e.what());
  }
  if (!header.is_object()) {
    return data_loss(path + ": header is not a JSON object but " + brief(header));
  }
  const uint64_t data_size = size - 8 - n;
  const uint8_t* data = bytes + 8 + n;
  for (const auto& [name, entry] : header.items()) {
    if (name == "__metadata__") {
      if (!entry.is_object()) {
        return data_loss(path + ": __metadata__ is not an object but " + brief(entry));
      }
      for (const auto& [key, value] : entry.items()) {
        if (!value.is_string()) {
          return data_loss(path + ": __metadata__ '" + key + "' is not a string but " +
                           brief(value));
        }
        out.metadata_[key] = value.get<std::string>();
      }
      continue;
    }
    TensorView view;
    uint64_t begin = 0;
    PG_RETURN_IF_ERROR(
        parse_entry(path + ": tensor '" + name + "'", entry, data_size, view, begin));
    // Offsets are not required to be aligned: a 2- or 4-byte tensor may start at an odd
    // address, so consumers read stored data with memcpy-safe loads.
    view.data = data + begin;
    out.tensors_.emplace(name, std::move(view));
  }
  return out;
}

Status write_safetensors(const std::string& path, const std::vector<TensorToWrite>& tensors,
                         const std::map<std::string, std::string>& metadata) {
  nlohmann::ordered_json header = nlohmann::ordered_json::object();
  if (!metadata.empty()) header["__metadata__"] = metadata;
  std::vector<ConstBuffer> parts;
  parts.reserve(tensors.size() + 2);
  parts.push_back({});  // the length field
  parts.push_back({});  // the header
  std::set<std::string> seen;
  uint64_t offset = 0;
  for (const TensorToWrite& t : tensors) {
    const std::string where = path + ": tensor '" + t.name + "'";
    if (t.name == "__metadata__") return invalid_argument(where + ": reserved name");
    if (!seen.insert(t.name).second) return invalid_argument(where + ": written twice");
    uint64_t nbytes = dtype_size(t.dtype);
    for (int64_t d : t.shape) {
      if (d < 0 || __builtin_mul_overflow(nbytes, static_cast<uint64_t>(d), &nbytes)) {
        return invalid_argument(where + ": invalid shape " + shape_to_string(t.shape));
      }
    }
    if (nbytes > 0 && t.data == nullptr) return invalid_argument(where + ": no data");
    header[t.name] = {{"dtype", dtype_name(t.dtype)},
                      {"shape", t.shape},
                      {"data_offsets", {offset, offset + nbytes}}};
    parts.push_back({t.data, static_cast<size_t>(nbytes)});
    offset += nbytes;
  }
  std::string text;
  try {
    text = header.dump();
  } catch (const nlohmann::json::exception& e) {  // a name or value that is not UTF-8
    return invalid_argument(path + ": cannot write the header: " + e.what());
  }
  // The data starts 64-byte aligned (a cache line: see LineAlignedAllocator).
  text.append((64 - (8 + text.size()) % 64) % 64, ' ');
  uint8_t length[8];
  for (int i = 0; i < 8; ++i) length[i] = static_cast<uint8_t>(text.size() >> (8 * i));
  parts[0] = {length, sizeof(length)};
  parts[1] = {text.data(), text.size()};
  return write_file_atomic_parts(path, parts);
}

Result<TensorStore> TensorStore::open_file(const std::string& path) {
  TensorStore store;
  PG_ASSIGN_OR_RETURN(SafetensorsFile file, SafetensorsFile::open(path));
  store.tensors_ = file.tensors();
  for (const auto& [name, view] : store.tensors_) store.file_of_[name] = path;
  store.metadata_ = file.metadata();
  store.files_.push_back(std::move(file));
  return store;
}

Result<TensorStore> TensorStore::open_dir(const std::string& dir) {
  bool is_dir = false;
  if (!path_exists(dir, &is_dir)) return not_found("checkpoint folder " + dir + " does not exist");
  if (!is_dir) return invalid_argument("checkpoint folder " + dir + " is not a folder");
  const std::string index_path = join(dir, kIndexName);
  if (!path_exists(index_path)) {
    const std::string single = join(dir, kSingleName);
    if (path_exists(single)) return open_file(single);
    return not_found(std::string("no ") + kSingleName + " or " + kIndexName + " in " + dir);
  }

  PG_ASSIGN_OR_RETURN(std::string text, read_file(index_path));
  json index;
  try {
    index = json::parse(text);
  } catch (const json::exception& e) {
    return data_loss(index_path + ": not valid JSON: " + e.what());
  }
  if (!index.is_object() || !index.contains("weight_map") || !index["weight_map"].is_object()) {
    return data_loss(index_path + ": no \"weight_map\" object");
  }
  const json& weight_map = index["weight_map"];
  if (weight_map.empty()) return data_loss(index_path + ": \"weight_map\" lists no tensors");
  std::map<std::string, std::string> shard_of;  // tensor -> shard file name
  std::set<std::string> shards;
  for (const auto& [name, shard] : weight_map.items()) {
    if (!shard.is_string()) {
      return data_loss(index_path + ": tensor '" + name + "': shard is not a string but " +
                       brief(shard));
    }
    const std::string file = shard.get<std::string>();
    if (!plain_file_name(file)) {
      return invalid_argument(index_path + ": tensor '" + name + "': shard '" + file +
                              "' is not a plain file name in the checkpoint folder");
    }
    shard_of[name] = file;
    shards.insert(file);
  }

  TensorStore store;
  for (const std::string& shard : shards) {  // each shard once, in name order
    const std::string shard_path = join(dir, shard);
    Result<SafetensorsFile> file = SafetensorsFile::open(shard_path);
    if (!file.ok()) {
      return file.status().with_context(index_path + ": shard '" + shard + "'");
    }
    for (const auto& [name, view] : file->tensors()) {
      auto [it, inserted] = store.file_of_.emplace(name, shard_path);
      if (!inserted) {
        return data_loss(index_path + ": tensor '" + name + "' is in two shards, " + it->second +
                         " and " + shard_path);
      }
      store.tensors_.emplace(name, view);
    }
    if (store.files_.empty()) store.metadata_ = file->metadata();
    store.files_.push_back(std::move(file).value());
  }
  for (const auto& [name, shard] : shard_of) {
    const std::string shard_path = join(dir, shard);
    auto it = store.file_of_.find(name);
    if (it == store.file_of_.end() || it->second != shard_path) {
      return data_loss(index_path + " lists tensor '" + name + "' in " + shard_path +
                       ", but that shard has no such tensor");
    }
  }
  return store;
}

const TensorView* TensorStore::find(const std::string& name) const {
  auto it = tensors_.find(name);
  return it == tensors_.end() ? nullptr : &it->second;
}

std::string TensorStore::file_of(const std::string& name) const {
  auto it = file_of_.find(name);
  return it == file_of_.end() ? std::string() : it->second;
}

}  // namespace pg::io
