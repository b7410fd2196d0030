// Writing a register tile whose vectors are columns of y (lane i = row i) into row-major
// y: the tile is transposed in registers, four columns at a time. Shared by the prefill
// products that keep rows of x in vector lanes (quant_gemm.cc, bf16_gemm.cc).
#pragma once

#include <immintrin.h>

#include <algorithm>
#include <cstdint>
#include <cstring>
#include <type_traits>

namespace pg::kernels {

#if defined(__AVX512F__)
// y[i, j] = (accumulate ? y[i, j] : bias[j] or 0) + c[j] lane i for i < rows (<= 16),
// j < NR (<= 8); y's rows are `ldy` floats apart. 128-bit lane q of a[r] holds row 4q + r's
// columns 0-3, of b[r] its columns 4-7; they are stored four at a time. (Measured: writing
// a 6 x 32 tile one float at a time took 5-10% of the q8 prefill products.)
template <int NR>
inline void store_columns(const __m512 (&c)[NR], float* y, int64_t ldy, int64_t rows,
                          const float* bias, bool accumulate = false) {
  static_assert(NR >= 1 && NR <= 8);
  const __m512 zero = _mm512_setzero_ps();
  auto col = [&](int j) { return j < NR ? c[j] : zero; };
  auto quads = [](__m512 c0, __m512 c1, __m512 c2, __m512 c3, __m512* a) {
    const __m512 lo01 = _mm512_unpacklo_ps(c0, c1), hi01 = _mm512_unpackhi_ps(c0, c1);
    const __m512 lo23 = _mm512_unpacklo_ps(c2, c3), hi23 = _mm512_unpackhi_ps(c2, c3);
    a[0] = _mm512_shuffle_ps(lo01, lo23, 0x44);
    a[1] = _mm512_shuffle_ps(lo01, lo23, 0xee);
    a[2] = _mm512_shuffle_ps(hi01, hi23, 0x44);
    a[3] = _mm512_shuffle_ps(hi01, hi23, 0xee);
  };
  constexpr int kLo = std::min(NR, 4), kHi = NR - kLo;  // columns in a, in b
  const auto lo_mask = static_cast<__mmask8>((1u << kLo) - 1);
  const auto hi_mask = static_cast<__mmask8>((1u << kHi) - 1);
  __m512 a[4], b[4];
  quads(col(0), col(1), col(2), col(3), a);
  const bool add_bias = bias != nullptr && !accumulate;
  if (add_bias) {
    const __m512 bias_lo = _mm512_broadcast_f32x4(_mm_maskz_loadu_ps(lo_mask, bias));
    for (__m512& v : a) v = _mm512_add_ps(v, bias_lo);
  }
  if constexpr (kHi > 0) {
    quads(col(4), col(5), col(6), col(7), b);
    if (add_bias) {
      const __m512 bias_hi = _mm512_broadcast_f32x4(_mm_maskz_loadu_ps(hi_mask, bias + 4));
      for (__m512& v : b) v = _mm512_add_ps(v, bias_hi);
    }
  }
  auto store_quad = [&]<int Q>(std::integral_constant<int, Q>) {
    for (int r = 0; r < 4 && 4 * Q + r < rows; ++r) {
      float* row = y + (4 * Q + r) * ldy;
      __m128 lo = _mm512_extractf32x4_ps(a[r], Q);
      if (accumulate) lo = _mm_add_ps(lo, _mm_maskz_loadu_ps(lo_mask, row));
      _mm_mask_storeu_ps(row, lo_mask, lo);
      if constexpr (kHi > 0) {
        __m128 hi = _mm512_extractf32x4_ps(b[r], Q);
        if (accumulate) hi = _mm_add_ps(hi, _mm_maskz_loadu_ps(hi_mask, row + 4));
        _mm_mask_storeu_ps(row + 4, hi_mask, hi);
      }
    }
  };
  store_quad(std::integral_constant<int, 0>{});
  store_quad(std::integral_constant<int, 1>{});
  store_quad(std::integral_constant<int, 2>{});
  store_quad(std::integral_constant<int, 3>{});
}
#endif

// Tiles write into a staging buffer rather than straight into y, whose rows are often a
// multiple of 4 KiB apart (Gemma: 2048 or 16384 columns): there a tile's 32 or 48 rows fell
// in one set of L1 and were evicted before the next tiles' columns filled the rest of their
// lines. The buffer's row stride for `width` columns: width, or 16 more where rows would be
// a multiple of 2 KiB apart.
inline int64_t stage_stride(int64_t width) { return width % 512 == 0 ? width + 16 : width; }

// rows x width floats from src (rows lds apart) to dst (rows ldd apart).
inline void copy_rows(float* dst, int64_t ldd, const float* src, int64_t lds, int64_t rows,
                      int64_t width) {
  for (int64_t i = 0; i < rows; ++i)
    std::memcpy(dst + i * ldd, src + i * lds, static_cast<size_t>(width) * sizeof(float));
}

}  // namespace pg::kernels
