// The prefill product for block-quantized weights (q8 I8, q4 U8) on AVX512-VNNI: int8
// activations times int8 weights, rescaled per block of 32. Internal to the kernels layer;
// model code reaches it through KernelTable::matmul and matmul_many.
#pragma once

#include <cstdint>

#include "kernels/kernels.h"

namespace pg::kernels {

// out[i].y[m, n_i] = x[m, K] W_i^T (+ out[i].bias) for i < count, every W_i [n_i, K] of one
// quantized format, x quantized once for all of them to int8 per block of 32 with steps
// that differ by powers of two within a row: row i's unit u_i = max(max_k |x[i, k]| / 127,
// 2^-100) / 2^12, block b's step u_i 2^s[i, b] with s[i, b] in [0, 12] the least for
// which max_{k in b} |x[i, k]| * (1 / u_i) / 2^s / 127 <= 1 (its largest block takes 12
// and an exact step, unless the 2^-100 floor applies; a block within 2^-12 of its row's
// largest has a step at most twice its amax / 127; smaller blocks take 0, the step u_i),
// and q = round-to-nearest-even(x * (1 / u_i) / 2^s), clamped to +-127. Every
// product of a block is summed exactly in int32 before its scales apply:
//   y[i, n] = u_i * sum_b scale_w[n, b] * (2^s[i, b] * sum_{k in b} q_x[i, k] q_w[n, k]).
// A partial last block (K not a multiple of 32) is zero-padded. Returns false, writing
// nothing, where it cannot run: no AVX512-VNNI in this build, or matrices not all q8 or all
// q4 with K columns.
bool gemm_quantized_vnni(const float* x, int64_t m, int64_t K, const MatmulOutput* out, int count);

// y[m, n] = gelu_tanh(x gate^T) * (x up^T), gate and up [n, K] of one quantized format: the
// values of gemm_quantized_vnni over both followed by gelu_tanh_mul, bit for bit, without
// the two [m, n] products in memory. Returns false, writing nothing, where
// gemm_quantized_vnni would, or where up's shape differs from gate's.
bool gemm_quantized_vnni_gelu_mul(const float* x, int64_t m, const MatrixView& gate,
                                  const MatrixView& up, float* y);

// The w8a8 products (amx_w8a8.h) on AVX512-VNNI, for CPUs without AMX: x quantized per
// row by quantize_rows_int8, weights that w8a8_formats takes (q8 whose blocks of a row
// share one scale), the int32 sums over whole rows, each output scaled once:
// out[i].y[r, n] = fma(float(s), w_scale[n] * x_scale[r], bias[n] or 0), the values of
// gemm_w8a8_reference bit for bit. Returns false, writing nothing, where it cannot run
// (no AVX512-VNNI in this build; matrices that w8a8_formats refuses).
bool w8a8_vnni_run();
bool gemm_w8a8_vnni(const float* x, int64_t m, int64_t K, const MatmulOutput* out, int count);

// y[m, n] = gelu_tanh(x gate^T) * (x up^T): gemm_w8a8_vnni over both followed by
// gelu_tanh_mul, bit for bit, without the two [m, n] products in memory.
bool gemm_w8a8_vnni_gelu_mul(const float* x, int64_t m, const MatrixView& gate,
                             const MatrixView& up, float* y);

}  // namespace pg::kernels
