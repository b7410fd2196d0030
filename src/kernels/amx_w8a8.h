// Prefill products of per-output-channel int8 weights (q8 whose blocks of a row share one
// scale: MatrixView::row_scales, the w8a8 mode) on AMX int8 tiles. x is quantized to int8
// per row, the products sum exactly in int32 over the whole row (tdpbssd), and each output
// is scaled once. Internal to the kernels layer; model code reaches it through
// KernelTable::matmul, matmul_many, matmul_gelu_mul and mlp, which take it before the
// other products wherever the matrices have row scales and AMX runs.
#pragma once

#include <cstdint>

#include "kernels/kernels.h"

namespace pg::kernels {

// x's rows as the w8a8 products take them: amax_r = max_c |x[r, c]|, scale[r] = amax_r /
// 127, q[r, c] = nearbyint(x[r, c] * (127 / amax_r)) (nearest even); a row of zeros gives
// codes 0 and scale 0. x [m, k]; q [m, ldq], zeros from column k to ldq >= k; scale [m].
void quantize_rows_int8(const float* x, int64_t m, int64_t k, int8_t* q, int64_t ldq, float* scale);

// Whether the w8a8 products take these matrices, on any CPU: every one q8 (I8) with
// row_scales, k columns, rows a multiple of 16 (whole tiles), data and scales set.
bool w8a8_formats(const MatmulOutput* out, int count, int64_t k);

// out[i].y[r, n] = fma(float(s), w_scale[n] * x_scale[r], bias[n] or 0) for i < count,
// where s = sum_c q[r, c] code_i[n, c] in int32 (exact: |s| <= 127^2 k), q and x_scale
// from quantize_rows_int8 and w_scale[n] the row's scale (scales[n * nb]). Returns false,
// writing nothing, where it cannot run: no AMX in this build or process, or matrices that
// w8a8_formats refuses.
bool gemm_w8a8_amx(const float* x, int64_t m, int64_t k, const MatmulOutput* out, int count);

// The same in plain scalar code, on any CPU (for matrices that w8a8_formats takes): the
// twin that tests compare gemm_w8a8_amx with, bit for bit.
void gemm_w8a8_reference(const float* x, int64_t m, int64_t k, const MatmulOutput* out, int count);

}  // namespace pg::kernels
