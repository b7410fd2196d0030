// Elementwise kernels on one span, on the calling thread: the arithmetic of the fast
// table's parallel ops (fast.cc), for products that apply them to their own outputs
// while those are still in cache.
#pragma once

#include <cstdint>

namespace pg::kernels {

// y[i] = gelu_tanh(gate[i]) * up[i] for i < n, the values of the fast gelu_tanh_mul bit for
// bit. y may alias gate or up.
void gelu_tanh_mul_span(const float* gate, const float* up, float* y, int64_t n);

}  // namespace pg::kernels
