// The prefill product for bf16 weights on AVX512-BF16 (vdpbf16ps): activations rounded
// to bf16, products summed in float32, weights read where they lie (row-major [n, k], as
// a checkpoint stores them: no per-call copy into another layout). Internal to the kernels
// layer; model code reaches it through KernelTable::matmul and matmul_many.
#pragma once

#include <cstdint>

#include "kernels/kernels.h"

namespace pg::kernels {

// out[i].y[m, n_i] = bf16(x)[m, k] W_i^T (+ out[i].bias) for i < count, every W_i bf16
// [n_i, k]; x packed once for all of them. x is rounded to nearest even; each output sums
// its products in float32 pairwise (one vdpbf16ps step adds two products), in order of k,
// whatever the other matrices. Returns false, writing nothing, where it cannot run: no
// AVX512-BF16 in this build, an odd k, or a W_i not bf16 with k columns.
bool gemm_bf16_avx512(const float* x, int64_t m, int64_t k, const MatmulOutput* out, int count);

// y[m, n] = gelu_tanh(x gate^T) * (x up^T), gate and up bf16 [n, k]: the values of
// gemm_bf16_avx512 over both followed by gelu_tanh_mul, bit for bit, without the two
// [m, n] products in memory. Returns false, writing nothing, where gemm_bf16_avx512 would,
// where up's shape differs from gate's, or where k needs more than one chunk (> 4096).
bool gemm_bf16_avx512_gelu_mul(const float* x, int64_t m, const MatrixView& gate,
                               const MatrixView& up, float* y);

// y[m, h] = (gelu_tanh(x gate^T) * (x up^T)) down^T, gate and up bf16 [n, k], down bf16
// [h, n]: the values of gemm_bf16_avx512_gelu_mul followed by gemm_bf16_avx512 over down,
// bit for bit. The gated [m, n] activations go from the first product's tiles straight
// into the second's packed x (in `scratch`, m * n floats, left holding no defined value),
// never into memory as float32. Returns false, writing nothing, where either product
// would, or where n is odd or m < 15.
bool gemm_bf16_avx512_mlp(const float* x, int64_t m, const MatrixView& gate, const MatrixView& up,
                          const MatrixView& down, float* scratch, float* y);

}  // namespace pg::kernels
