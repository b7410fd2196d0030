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
