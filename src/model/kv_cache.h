// The decoder's key/value cache: per layer, keys and values of every token so far,
// rows [0, length) valid, room for `capacity` tokens.
#pragma once

#include <cstdint>
#include <vector>

#include "tensor/tensor.h"

namespace pg::model {

class KvCache {
 public:
  KvCache() = default;
  // width = num_key_value_heads * head_dim.
  KvCache(int64_t num_layers, int64_t capacity, int64_t width);

  int64_t capacity() const { return capacity_; }
  int64_t length() const { return length_; }
  int64_t width() const { return width_; }
  // k(layer): [capacity, width]; rows [0, length) hold keys (after RoPE).
  Tensor& k(int64_t layer) { return k_[static_cast<size_t>(layer)]; }
  Tensor& v(int64_t layer) { return v_[static_cast<size_t>(layer)]; }
  // Marks `n` more rows valid (after every layer has written them).
  void advance(int64_t n) { length_ += n; }
  void clear() { length_ = 0; }
  // Bytes held.
  int64_t bytes() const;

 private:
  int64_t capacity_ = 0;
  int64_t length_ = 0;
  int64_t width_ = 0;
  std::vector<Tensor> k_, v_;
};

}  // namespace pg::model
