// The prefill product for bf16 weights on AVX512-BF16 (vdpbf16ps): activations rounded
// to bf16, products summed in float32, weights read where they lie (row-major [n, k], as
// a checkpoint stores them: no per-call copy into another layout). Internal to the kernels
// layer; model code reaches it through KernelTable::matmul.
#pragma once

#include <cstdint>

namespace pg::kernels {

// y[m, n] (rows ldy floats apart) = bf16(x)[m, k] W^T (+ bias), W: [n, k] bf16. x is
// rounded to nearest even; each output sums its products in float32 pairwise (one
// vdpbf16ps step adds two products), in order of k. Returns false, writing nothing, where
// it cannot run: no AVX512-BF16 in this build, or an odd k.
bool gemm_bf16_avx512(const float* x, int64_t m, const uint16_t* w, int64_t n, int64_t k,
                      const float* bias, float* y, int64_t ldy);

}  // namespace pg::kernels
