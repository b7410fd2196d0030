// Prefill products of per-output-channel int8 weights (q8 whose blocks of a row share one
// scale: MatrixView::row_scales, the w8a8 mode) on AMX int8 tiles. x is quantized to int8
// per row, the products sum exactly in int32 over the whole row (tdpbssd), and each output
// is scaled once. Internal to the kernels layer; model code reaches it through
// KernelTable::matmul, matmul_many, matmul_gelu_mul and mlp, which take it before the
// other products for 16 rows of x or more wherever w8a8_products_run() and w8a8_formats.
#pragma once

#include <cstdint>

#include "kernels/kernels.h"

namespace pg::kernels {

// Rows of x whose largest magnitude is below this count as zeros (127 / amax would
// overflow float32).
inline constexpr float kSmallestRowMax = 0x1p-120f;

// x's rows as the w8a8 products take them: amax_r = max_c |x[r, c]|, scale[r] = amax_r /
// 127, q[r, c] = nearbyint(x[r, c] * (127 / amax_r)) (nearest even, |q| <= 127). A row
// below kSmallestRowMax gets codes 0 and scale 0; a row holding a NaN or an infinity codes
// 0 and scale NaN, so that its outputs are NaN. x [m, k]; q [m, ldq], zeros from column k
// to ldq >= k; scale [m].
void quantize_rows_int8(const float* x, int64_t m, int64_t k, int8_t* q, int64_t ldq, float* scale);

// Whether gemm_w8a8_amx runs at all: this build has AMX-INT8 and the process may use the
// tiles (pg::amx_enabled()).
bool w8a8_products_run();

// Whether the w8a8 products take these matrices, on any CPU: every one q8 (I8) with
// row_scales, k columns (k < 2^17, so that the int32 sums cannot overflow: |s| <= 128^2 k),
// rows a multiple of 16 (whole tiles), data and scales set.
bool w8a8_formats(const MatmulOutput* out, int count, int64_t k);

// out[i].y[r, n] = fma(float(s), w_scale[n] * x_scale[r], bias[n] or 0) for i < count,
// where s = sum_c q[r, c] code_i[n, c] in int32 (exact), q and x_scale
// from quantize_rows_int8 and w_scale[n] the row's scale (scales[n * nb]). Returns false,
// writing nothing, where it cannot run: no AMX in this build or process, or matrices that
// w8a8_formats refuses.
bool gemm_w8a8_amx(const float* x, int64_t m, int64_t k, const MatmulOutput* out, int count);

// y[m, n] = gelu_tanh(x gate^T) * (x up^T), gate and up [n, k] that w8a8_formats takes:
// the values of gemm_w8a8_amx over both followed by gelu_tanh_mul, bit for bit, each job
// running gate's and up's same 16 rows, so that the two products' tiles are gated while in
// cache and neither [m, n] product reaches memory. Returns false, writing nothing, where
// gemm_w8a8_amx would or where up's rows differ from gate's.
bool gemm_w8a8_amx_gelu_mul(const float* x, int64_t m, const MatrixView& gate, const MatrixView& up,
                            float* y);

// The same in plain scalar code, on any CPU (for matrices that w8a8_formats takes): the
// twin that tests compare gemm_w8a8_amx with, bit for bit.
void gemm_w8a8_reference(const float* x, int64_t m, int64_t k, const MatmulOutput* out, int count);

}  // namespace pg::kernels
