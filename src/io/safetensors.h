// Safetensors: reading (memory-mapped, every header field checked against the file)
// and writing; and checkpoint folders with one file or shards plus an index.
//
// Format: 8-byte little-endian header length N, N bytes of JSON
// {"name": {"dtype": "F32", "shape": [..], "data_offsets": [begin, end]}, ...,
//  "__metadata__": {"key": "value"}}, then the data; offsets are relative to the data.
#pragma once

#include <map>
#include <memory>
#include <string>
#include <vector>

#include "base/status.h"
#include "io/mapped_file.h"
#include "tensor/tensor.h"

namespace pg::io {

class SafetensorsFile {
 public:
  // Maps and validates `path`: header length within the file, JSON well formed, every
  // dtype known, every shape non-negative, end - begin == numel * dtype size, offsets
  // inside the data region. Errors name the file and the tensor.
  static Result<SafetensorsFile> open(const std::string& path);

  const std::string& path() const { return file_->path(); }
  // Views point into the mapping, which lives as long as any copy of this object. Their
  // data is not necessarily aligned to the dtype size (offsets are the file's), so read it
  // with memcpy-safe loads.
  const std::map<std::string, TensorView>& tensors() const { return tensors_; }
  const std::map<std::string, std::string>& metadata() const { return metadata_; }

 private:
  std::shared_ptr<MappedFile> file_;
  std::map<std::string, TensorView> tensors_;
  std::map<std::string, std::string> metadata_;
};

// A tensor to write: data holds numel(shape) * dtype_size(dtype) bytes.
struct TensorToWrite {
  std::string name;
  DType dtype = DType::kF32;
  Shape shape;
  const void* data = nullptr;
};

// Writes a safetensors file atomically. Tensors are written in the given order.
Status write_safetensors(const std::string& path, const std::vector<TensorToWrite>& tensors,
                         const std::map<std::string, std::string>& metadata = {});

// The tensors of a checkpoint folder: `model.safetensors`, or the shards listed by
// `model.safetensors.index.json` ("weight_map": name -> file). Every shard is mapped
// once; a name the index lists but its shard lacks is an error, as is a missing shard.
class TensorStore {
 public:
  static Result<TensorStore> open_dir(const std::string& dir);
  // A single file.
  static Result<TensorStore> open_file(const std::string& path);

  const TensorView* find(const std::string& name) const;
  // Which file holds `name` (for error messages); empty if none.
  std::string file_of(const std::string& name) const;
  const std::map<std::string, TensorView>& tensors() const { return tensors_; }
  // Metadata of the first file.
  const std::map<std::string, std::string>& metadata() const { return metadata_; }

 private:
  std::vector<SafetensorsFile> files_;
  std::map<std::string, TensorView> tensors_;
  std::map<std::string, std::string> file_of_;
  std::map<std::string, std::string> metadata_;
};

}  // namespace pg::io
