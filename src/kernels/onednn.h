// Matrix products on oneDNN (Debian's libdnnl, the library PyTorch's CPU speed comes
// from), for the prefill and vision shapes where a tuned GEMM pays off. oneDNN runs on
// OpenMP, the process's one threading runtime.
#pragma once

#include <cstdint>

namespace pg::kernels {

// y[m, n] = x[m, k] W^T (+ bias), W stored bf16 [n, k] row-major; x is rounded to bf16,
// accumulation in float32. Returns false if oneDNN cannot run it (then nothing is written).
bool onednn_matmul_bf16(const float* x, int64_t m, const uint16_t* w, int64_t n, int64_t k,
                        const float* bias, float* y);
// out[i] = bf16(x[i]) (nearest even) for i < n, in parallel: activations for the bf16
// products, rounded once.
void round_to_bf16(const float* x, int64_t n, uint16_t* out);
// The same with x already rounded to bf16 ([m, k]) and rows of y ldy floats apart (y may
// be a column slice of a wider matrix).
bool onednn_matmul_bf16_rounded(const uint16_t* xb, int64_t m, const uint16_t* w, int64_t n,
                                int64_t k, const float* bias, float* y, int64_t ldy);
// The same with float32 weights and activations (exact float32 arithmetic).
bool onednn_matmul_f32(const float* x, int64_t m, const float* w, int64_t n, int64_t k,
                       const float* bias, float* y);

}  // namespace pg::kernels
