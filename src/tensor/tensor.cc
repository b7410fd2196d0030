#include "tensor/tensor.h"

#include <cstdlib>
#include <cstring>
#include <new>

namespace pg {

int64_t shape_numel(const Shape& shape) {
  int64_t n = 1;
  for (int64_t d : shape) n *= d;
  return n;
}

std::string shape_to_string(const Shape& shape) {
  std::string s = "[";
  for (size_t i = 0; i < shape.size(); ++i) {
    if (i) s += ", ";
    s += std::to_string(shape[i]);
  }
  return s + "]";
}

void dequantize_row(const MatrixView& w, int64_t r, float* out) {
  const auto* base = static_cast<const uint8_t*>(w.data) + r * w.row_bytes();
  switch (w.dtype) {
    case DType::kI8: {
      const int64_t nb = quant_blocks(w.cols);
      const float* s = w.scales + r * nb;
      for (int64_t c = 0; c < w.cols; ++c) {
        const int64_t b = c / kQuantBlock;
        const auto q = static_cast<int8_t>(base[group_byte(nb, kQuantBlock, b, c % kQuantBlock)]);
        out[c] = static_cast<float>(q) * s[b];
      }
      return;
    }
    case DType::kU8: {
      const int64_t nb = quant_blocks(w.cols);
      const float* s = w.scales + r * nb;
      for (int64_t c = 0; c < w.cols; ++c) {
        const int64_t b = c / kQuantBlock, j = c % kQuantBlock;
        const uint8_t byte = base[group_byte(nb, kQuantBlock / 2, b, j % (kQuantBlock / 2))];
        const int code = j < kQuantBlock / 2 ? (byte & 0x0f) : (byte >> 4);
        out[c] = static_cast<float>(code - 8) * s[b];
      }
      return;
    }
    default: convert_to_f32(w.dtype, base, out, w.cols);
  }
}

void Tensor::Free::operator()(float* p) const { std::free(p); }

Tensor::Tensor(Shape shape) : shape_(std::move(shape)), numel_(shape_numel(shape_)) {
  const size_t bytes = ((static_cast<size_t>(numel_) * sizeof(float) + 63) / 64) * 64;
  void* p = std::aligned_alloc(64, bytes == 0 ? 64 : bytes);
  if (p == nullptr) throw std::bad_alloc();
  std::memset(p, 0, bytes == 0 ? 64 : bytes);
  data_.reset(static_cast<float*>(p));
}

Tensor Tensor::from_view(const TensorView& view) {
  Tensor t(view.shape);
  convert_to_f32(view.dtype, view.data, t.data(), t.numel());
  return t;
}

void Tensor::reshape(Shape shape) {
  assert(shape_numel(shape) == numel_);
  shape_ = std::move(shape);
}

}  // namespace pg
