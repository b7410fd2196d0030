#include "train/linear.h"

#include <cstring>
#include <vector>

#include "kernels/backward.h"
#include "kernels/kernels.h"

namespace pg::train {

// x: [m, in] -> y: [m, out]; the LoRA path: t = x A^T [m, r], y += scale * t B^T.
void linear_forward(const Linear& l, const float* x, int64_t m, float* y) {
  const kernels::KernelTable& k = kernels::kernels();
  k.matmul(x, m, l.weight->view, l.bias != nullptr ? l.bias->data() : nullptr, y);
  if (l.lora == nullptr) return;
  const LoraAdapter& a = *l.lora;
  const int64_t r = a.a.shape[0], out = l.out();
  std::vector<float> t(static_cast<size_t>(m * r)), u(static_cast<size_t>(m * out));
  k.matmul(x, m, a.a.view, nullptr, t.data());
  k.matmul(t.data(), m, a.b.view, nullptr, u.data());
  for (int64_t i = 0; i < m * out; ++i) y[i] += a.scale * u[static_cast<size_t>(i)];
}

// x: [m, in], dy: [m, out] -> dx: [m, in].
void linear_backward(const Linear& l, const float* x, const float* dy, int64_t m, float* dx,
                     bool accumulate) {
  const int64_t out = l.out(), in = l.in();
  Param& w = *l.weight;
  if (w.trainable) {
    float* db = l.bias != nullptr && l.bias->trainable ? l.bias->grad.data() : nullptr;
    kernels::matmul_backward_weight_fast(dy, x, m, out, in, w.grad.data(), db);
  } else if (l.bias != nullptr && l.bias->trainable) {
    float* db = l.bias->grad.data();
    for (int64_t j = 0; j < out; ++j) {
      float s = 0.0f;
      for (int64_t i = 0; i < m; ++i) s += dy[i * out + j];
      db[j] += s;
    }
  }
  if (dx != nullptr) kernels::matmul_backward_input_fast(dy, m, w.view, dx, accumulate);
  if (l.lora == nullptr) return;

  // y += scale * (x A^T) B^T: with sdy = scale * dy and t = x A^T,
  // dB += sdy^T t, dt = sdy B, dA += dt^T x, dx += dt A.
  LoraAdapter& a = *l.lora;
  const int64_t r = a.a.shape[0];
  std::vector<float> t(static_cast<size_t>(m * r)), dt(static_cast<size_t>(m * r));
  std::vector<float> sdy(dy, dy + m * out);
  for (float& v : sdy) v *= a.scale;
  kernels::kernels().matmul(x, m, a.a.view, nullptr, t.data());
  kernels::matmul_backward_weight_fast(sdy.data(), t.data(), m, out, r, a.b.grad.data(), nullptr);
  kernels::matmul_backward_input_fast(sdy.data(), m, a.b.view, dt.data(), false);
  kernels::matmul_backward_weight_fast(dt.data(), x, m, r, in, a.a.grad.data(), nullptr);
  if (dx != nullptr) kernels::matmul_backward_input_fast(dt.data(), m, a.a.view, dx, true);
}

// -> [out, in] float32.
Tensor merged_weight(const Linear& l) {
  Tensor w = param_f32(*l.weight);
  if (l.lora == nullptr) return w;
  const LoraAdapter& a = *l.lora;
  const int64_t r = a.a.shape[0], out = l.out(), in = l.in();
  const float* A = a.a.data();
  const float* B = a.b.data();
  float* W = w.data();
  for (int64_t i = 0; i < out; ++i) {
    for (int64_t j = 0; j < in; ++j) {
      float s = 0.0f;
      for (int64_t q = 0; q < r; ++q) s += B[i * r + q] * A[q * in + j];
      W[i * in + j] += a.scale * s;
    }
  }
  return w;
}

}  // namespace pg::train
