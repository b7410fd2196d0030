// The w8a8 mode's parts that every CPU shares: x quantized to int8 per row, the formats
// the w8a8 products take (q8 whose blocks of a row share one scale: MatrixView::row_scales),
// and the products' scalar twin. The products themselves run on AMX int8 tiles
// (amx_w8a8.h) or AVX512-VNNI (quant_gemm.h), each bit for bit the twin. Internal to the
// kernels layer.
#pragma once

#include <immintrin.h>

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

// Row x[0, k)'s quantization as quantize_rows_int8 makes it: its scale, and the factor
// its values are multiplied by before rounding, 0 where its codes are all 0 (a row below
// kSmallestRowMax, or one holding a NaN or an infinity, whose scale is NaN).
struct RowQuantization {
  float scale, inv;
};
RowQuantization quantize_row(const float* x, int64_t k);

#if defined(__AVX512BW__)
// 16 values' codes with a row's factor (RowQuantization::inv, not 0): nearest even,
// saturated to int8 (|x * inv| <= 127 up to rounding). Every vector path that quantizes
// x for the w8a8 products goes through this, so that they give the same codes.
inline __m128i quantize16(__m512 x, __m512 inv) {
  return _mm512_cvtsepi32_epi8(_mm512_cvtps_epi32(_mm512_mul_ps(x, inv)));
}
#endif

// Whether the w8a8 products take these matrices, on any CPU: every one q8 (I8) with
// row_scales, k columns (k < 2^17, so that the int32 sums cannot overflow: |s| <= 128^2 k),
// rows a multiple of 16 (whole tiles), data and scales set.
bool w8a8_formats(const MatmulOutput* out, int count, int64_t k);

// out[i].y[r, n] = fma(float(s), w_scale[n] * x_scale[r], bias[n] or 0) for i < count,
// where s = sum_c q[r, c] code_i[n, c] in int32 (exact), q and x_scale from
// quantize_rows_int8 and w_scale[n] the row's scale (scales[n * nb]), in plain scalar
// code on any CPU (for matrices that w8a8_formats takes): the twin that tests compare the
// AMX and VNNI products with, bit for bit.
void gemm_w8a8_reference(const float* x, int64_t m, int64_t k, const MatmulOutput* out, int count);

}  // namespace pg::kernels
