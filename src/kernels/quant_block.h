// The activations' int8 quantizer of the decode dot products (quant.cc), one block of 32
// at a time: step amax / 127, the rule the kernel tests recompute. (The prefill GEMM's
// packing, quant_gemm.cc, takes steps a power of two apart within a row instead.)
#pragma once

#include <algorithm>
#include <cmath>
#include <cstdint>

#if defined(__AVX512F__) && defined(__AVX512BW__)
#include <immintrin.h>
#endif

#include "kernels/lane_masks.h"
#include "tensor/tensor.h"

namespace pg::kernels {

// One block of n <= 32 values: q[c] = round(x[c] / scale) (nearest even), scale =
// amax / 127, |q| <= 127 (a clamp that only matters for non-finite x: meaningless but
// well-defined products); returns the scale, and the sum of q in *sum.
#if defined(__AVX512F__) && defined(__AVX512BW__)
inline float quantize_block(const float* x, int64_t n, int8_t* q, int32_t* sum) {
  const __mmask16 m0 = first_n16(n), m1 = first_n16(n - 16);
  const __m512 x0 = _mm512_maskz_loadu_ps(m0, x), x1 = _mm512_maskz_loadu_ps(m1, x + 16);
  const float amax = _mm512_reduce_max_ps(_mm512_max_ps(_mm512_abs_ps(x0), _mm512_abs_ps(x1)));
  const float s = amax / 127.0f;
  const __m512 inv = _mm512_set1_ps(s > 0 ? 1.0f / s : 0.0f);
  const __m512i lo = _mm512_set1_epi32(-127), hi = _mm512_set1_epi32(127);
  // (cvtps rounds to nearest even, as lrintf does; NaN becomes INT_MIN, clamped to -127.)
  const __m512i q0 =
      _mm512_min_epi32(_mm512_max_epi32(_mm512_cvtps_epi32(_mm512_mul_ps(x0, inv)), lo), hi);
  const __m512i q1 =
      _mm512_min_epi32(_mm512_max_epi32(_mm512_cvtps_epi32(_mm512_mul_ps(x1, inv)), lo), hi);
  _mm_storeu_si128(reinterpret_cast<__m128i*>(q), _mm512_cvtepi32_epi8(q0));
  _mm_storeu_si128(reinterpret_cast<__m128i*>(q + 16), _mm512_cvtepi32_epi8(q1));
  *sum = _mm512_reduce_add_epi32(_mm512_add_epi32(q0, q1));  // masked-off lanes are 0
  return s;
}
#else
inline float quantize_block(const float* x, int64_t n, int8_t* q, int32_t* sum) {
  float amax = 0;
  for (int64_t c = 0; c < n; ++c) amax = std::max(amax, std::fabs(x[c]));
  const float s = amax / 127.0f;
  const float inv = s > 0 ? 1.0f / s : 0.0f;
  *sum = 0;
  for (int64_t c = 0; c < kQuantBlock; ++c) {
    const int v =
        c < n ? static_cast<int>(std::clamp<long>(std::lrintf(x[c] * inv), -127, 127)) : 0;
    q[c] = static_cast<int8_t>(v);
    *sum += v;
  }
  return s;
}
#endif

}  // namespace pg::kernels
