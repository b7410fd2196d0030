// Small tensor helpers shared by the training forward and backward passes.
#pragma once

#include <cstring>

#include "tensor/tensor.h"

namespace pg::train {

inline Tensor clone(const Tensor& t) {
  Tensor out(t.shape());
  if (t.numel() > 0)
    std::memcpy(out.data(), t.data(), sizeof(float) * static_cast<size_t>(t.numel()));
  return out;
}

// y += x, both [n].
inline void add_into(float* y, const float* x, int64_t n) {
  for (int64_t i = 0; i < n; ++i) y[i] += x[i];
}

}  // namespace pg::train
