// NumPy .npy arrays (format version 1.0/2.0/3.0, little-endian, C order).
#pragma once

#include <string>
#include <vector>

#include "base/status.h"
#include "tensor/tensor.h"

namespace pg::io {

// Writes a float32 array atomically.
Status write_npy(const std::string& path, const float* data, const Shape& shape);
// Serialises a float32 array to .npy bytes.
std::string encode_npy(const float* data, const Shape& shape);

struct NpyArray {
  DType dtype = DType::kF32;
  Shape shape;
  std::vector<uint8_t> data;  // numel * dtype_size bytes, little-endian, C order
};

// Parses .npy bytes; `name` appears in error messages. Rejects Fortran order,
// big-endian and object arrays, and data shorter than the header says.
Result<NpyArray> decode_npy(const uint8_t* bytes, size_t size, const std::string& name);
Result<NpyArray> read_npy(const std::string& path);

}  // namespace pg::io
