// The decoder's key/value cache: per layer, keys and values of every token so far,
// rows [0, length) valid, room for `capacity` tokens. float32, or bf16 in the
// low-precision modes: their attention rounds keys and values to bf16 for its products
// anyway (AttentionParams::low_precision), and a bf16 cache halves both the memory and
// the bytes every decode step's attention reads.
#pragma once

#include <cstdint>
#include <vector>

#include "base/memory.h"
#include "tensor/dtype.h"

namespace pg::model {

class KvCache {
 public:
  KvCache() = default;
  // width = num_key_value_heads * head_dim; dtype kF32 or kBF16.
  KvCache(int64_t num_layers, int64_t capacity, int64_t width, DType dtype = DType::kF32);

  int64_t capacity() const { return capacity_; }
  int64_t length() const { return length_; }
  int64_t width() const { return width_; }
  DType dtype() const { return dtype_; }
  // Layer `layer`'s keys (after RoPE) and values: [capacity, width] of dtype().
  void* k(int64_t layer) { return k_[static_cast<size_t>(layer)].data(); }
  void* v(int64_t layer) { return v_[static_cast<size_t>(layer)].data(); }
  // A float32 cache's rows from `row` on.
  float* k_rows(int64_t layer, int64_t row);
  float* v_rows(int64_t layer, int64_t row);
  // Rounds float32 keys and values k, v: [rows, width] into a bf16 cache's rows [row,
  // row + rows) (nearest even, as the attention's bf16 products round them).
  void store_bf16(int64_t layer, int64_t row, int64_t rows, const float* k, const float* v);
  // Marks `n` more rows valid (after every layer has written them).
  void advance(int64_t n) { length_ += n; }
  void clear() { length_ = 0; }
  // Bytes held.
  int64_t bytes() const;

 private:
  int64_t capacity_ = 0;
  int64_t length_ = 0;
  int64_t width_ = 0;
  DType dtype_ = DType::kF32;
  std::vector<LineAlignedVector<uint8_t>> k_, v_;  // [capacity][width] of dtype_ each
};

}  // namespace pg::model
