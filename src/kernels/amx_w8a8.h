// Prefill products of per-output-channel int8 weights (q8 whose blocks of a row share one
// scale: MatrixView::row_scales, the w8a8 mode) on AMX int8 tiles. x is quantized to int8
// per row, the products sum exactly in int32 over the whole row (tdpbssd), and each output
// is scaled once. Internal to the kernels layer; model code reaches it through
// KernelTable::matmul, matmul_many, matmul_gelu_mul and mlp, which take it before the
// other products for 16 rows of x or more wherever w8a8_products_run() and w8a8_formats.
#pragma once

#include <cstdint>

#include "kernels/kernels.h"
#include "kernels/w8a8.h"

namespace pg::kernels {

// Whether gemm_w8a8_amx runs at all: this build has AMX-INT8 and the process may use the
// tiles (pg::amx_enabled()).
bool w8a8_products_run();

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

// (quantize_rows_int8, w8a8_formats and gemm_w8a8_reference, the scalar twin that tests
// compare this product with bit for bit: w8a8.h.)

}  // namespace pg::kernels
