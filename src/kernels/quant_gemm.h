// The prefill product for block-quantized weights (q8 I8, q4 U8) on AVX512-VNNI: int8
// activations times int8 weights, rescaled per block of 32. Internal to the kernels layer;
// model code reaches it through KernelTable::matmul.
#pragma once

#include <cstdint>

#include "tensor/tensor.h"

namespace pg::kernels {

// y[m, w.rows] = x[m, w.cols] W^T (+ bias) with x quantized to int8 per block of 32
// (scale = amax / 127, q = round-to-nearest-even(x / scale), as the decode product does),
// and every product of a block summed exactly in int32 before its two scales apply:
//   y[i, n] = sum_b scale_x[i, b] * scale_w[n, b] * sum_{k in b} q_x[i, k] q_w[n, k].
// A partial last block (w.cols not a multiple of 32) is zero-padded. Returns false,
// writing nothing, where it cannot run: no AVX512-VNNI in this build.
bool gemm_quantized_vnni(const float* x, int64_t m, const MatrixView& w, const float* bias,
                         float* y);

}  // namespace pg::kernels
