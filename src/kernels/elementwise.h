// Elementwise kernels on one span, on the calling thread: the arithmetic of the fast
// table's parallel ops (fast.cc), for products that apply them to their own outputs
// while those are still in cache.
#pragma once

#include <cstdint>

namespace pg::kernels {

// y[i] = gelu_tanh(gate[i]) * up[i] for i < n, the values of the fast gelu_tanh_mul bit for
// bit. y may alias gate or up.
void gelu_tanh_mul_span(const float* gate, const float* up, float* y, int64_t n);

// y[i] = e^(x[i] s - m) for i < n, as the bf16 flash attention computes its probabilities
// before rounding them to bf16 (fast.cc's exp_for_bf16): relative error at most 3.4e-6
// plus float32 rounding of the exponent's argument, x s - m held at >= -125 ln 2 (so never
// subnormal). Without AVX-512F, exp16 of the same clamped argument (within 2 ulp). For its
// test.
void exp_for_bf16_span(const float* x, float s, float m, float* y, int64_t n);

}  // namespace pg::kernels
