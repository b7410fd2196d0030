// The prefill product for block-quantized weights (q8 I8, q4 U8) on AVX512-VNNI: int8
// activations times int8 weights, rescaled per block of 32. Internal to the kernels layer;
// model code reaches it through KernelTable::matmul and matmul_many.
#pragma once

#include <cstdint>

#include "kernels/kernels.h"

namespace pg::kernels {

// out[i].y[m, n_i] = x[m, K] W_i^T (+ out[i].bias) for i < count, every W_i [n_i, K] of one
// quantized format, x quantized once for all of them: to int8 per block of 32 (scale =
// amax / 127, q = round-to-nearest-even(x / scale), as the decode product does), and every
// product of a block summed exactly in int32 before its two scales apply:
//   y[i, n] = sum_b scale_x[i, b] * scale_w[n, b] * sum_{k in b} q_x[i, k] q_w[n, k].
// A partial last block (K not a multiple of 32) is zero-padded. Returns false, writing
// nothing, where it cannot run: no AVX512-VNNI in this build, or matrices not all q8 or all
// q4 with K columns.
bool gemm_quantized_vnni(const float* x, int64_t m, int64_t K, const MatmulOutput* out, int count);

}  // namespace pg::kernels
