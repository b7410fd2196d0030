#include "model/kv_cache.h"

#include <cassert>

namespace pg::model {

KvCache::KvCache(int64_t num_layers, int64_t capacity, int64_t width, DType dtype)
    : capacity_(capacity), width_(width), dtype_(dtype) {
  assert(dtype == DType::kF32 || dtype == DType::kBF16);
  const auto bytes = static_cast<size_t>(capacity * width) * dtype_size(dtype);
  k_.reserve(static_cast<size_t>(num_layers));
  v_.reserve(static_cast<size_t>(num_layers));
  for (int64_t i = 0; i < num_layers; ++i) {
    k_.emplace_back(bytes);
    v_.emplace_back(bytes);
  }
}

float* KvCache::k_rows(int64_t layer, int64_t row) {
  assert(dtype_ == DType::kF32);
  return reinterpret_cast<float*>(k(layer)) + row * width_;
}

float* KvCache::v_rows(int64_t layer, int64_t row) {
  assert(dtype_ == DType::kF32);
  return reinterpret_cast<float*>(v(layer)) + row * width_;
}

void KvCache::store_bf16(int64_t layer, int64_t row, int64_t rows, const float* k_in,
                         const float* v_in) {
  assert(dtype_ == DType::kBF16 && row + rows <= capacity_);
  auto* kd = reinterpret_cast<uint16_t*>(k(layer)) + row * width_;
  auto* vd = reinterpret_cast<uint16_t*>(v(layer)) + row * width_;
  const int64_t n = rows * width_;
  for (int64_t i = 0; i < n; ++i) kd[i] = f32_to_bf16(k_in[i]);
  for (int64_t i = 0; i < n; ++i) vd[i] = f32_to_bf16(v_in[i]);
}

int64_t KvCache::bytes() const {
  return 2 * static_cast<int64_t>(k_.size()) * capacity_ * width_ *
         static_cast<int64_t>(dtype_size(dtype_));
}

}  // namespace pg::model
