// The w8a8 mode's shared parts (w8a8.h): per-row quantization of x, the products' formats
// and their scalar twin.
#include "kernels/w8a8.h"

#include <immintrin.h>

#include <algorithm>
#include <cmath>
#include <limits>
#include <vector>

#include "base/parallel.h"
#include "kernels/lane_masks.h"

namespace pg::kernels {

namespace {

// The code of row n at column c of a q8 matrix (group layout, tensor.h).
int8_t code_at(const MatrixView& w, int64_t n, int64_t c) {
  const int64_t nb = quant_blocks(w.cols);
  const auto* row = static_cast<const int8_t*>(w.data) + n * w.row_bytes();
  return row[group_byte(nb, kQuantBlock, c / kQuantBlock, c % kQuantBlock)];
}

// A row's quantization from its largest magnitude a and whether it holds a NaN or an
// infinity (quantize_rows_int8).
RowQuantization row_quantization(float a, bool nonfinite) {
  if (nonfinite) return {std::numeric_limits<float>::quiet_NaN(), 0.0f};
  if (!(a >= kSmallestRowMax)) return {0.0f, 0.0f};
  return {a / 127.0f, 127.0f / a};
}

// quantize_row in plain scalar code.
RowQuantization quantize_row_scalar(const float* x, int64_t k) {
  float amax = 0.0f;
  bool nonfinite = false;
  for (int64_t c = 0; c < k; ++c) {
    const float v = std::fabs(x[c]);
    nonfinite |= !(v <= std::numeric_limits<float>::max());
    amax = std::max(amax, v);
  }
  return row_quantization(amax, nonfinite);
}

// quantize_rows_int8 in plain scalar code.
void quantize_rows_scalar(const float* x, int64_t m, int64_t k, int8_t* q, int64_t ldq,
                          float* scale) {
  for (int64_t r = 0; r < m; ++r) {
    const RowQuantization s = quantize_row_scalar(x + r * k, k);
    scale[r] = s.scale;
    for (int64_t c = 0; c < k; ++c) {
      q[r * ldq + c] =
          s.inv == 0.0f ? int8_t{0} : static_cast<int8_t>(std::nearbyint(x[r * k + c] * s.inv));
    }
    std::fill(q + r * ldq + k, q + (r + 1) * ldq, int8_t{0});
  }
}

}  // namespace

bool w8a8_formats(const MatmulOutput* out, int count, int64_t k) {
  if (count <= 0 || k <= 0 || k >= (int64_t{1} << 17)) return false;
  for (int i = 0; i < count; ++i) {
    const MatrixView& w = out[i].w;
    if (w.dtype != DType::kI8 || !w.row_scales || w.cols != k || w.rows % 16 != 0 ||
        w.data == nullptr || w.scales == nullptr)
      return false;
  }
  return true;
}

void gemm_w8a8_reference(const float* x, int64_t m, int64_t k, const MatmulOutput* out, int count) {
  std::vector<int8_t> q(static_cast<size_t>(m * k));
  std::vector<float> x_scale(static_cast<size_t>(m));
  quantize_rows_scalar(x, m, k, q.data(), k, x_scale.data());
  for (int i = 0; i < count; ++i) {
    const MatrixView& w = out[i].w;
    const int64_t nb = quant_blocks(k);
    for (int64_t r = 0; r < m; ++r) {
      for (int64_t n = 0; n < w.rows; ++n) {
        int32_t s = 0;
        for (int64_t c = 0; c < k; ++c) s += q[static_cast<size_t>(r * k + c)] * code_at(w, n, c);
        const float scale = w.scales[n * nb] * x_scale[static_cast<size_t>(r)];
        out[i].y[r * w.rows + n] =
            std::fma(static_cast<float>(s), scale, out[i].bias != nullptr ? out[i].bias[n] : 0.0f);
      }
    }
  }
}

#if defined(__AVX512BW__)

RowQuantization quantize_row(const float* x, int64_t k) {
  __m512 amax = _mm512_setzero_ps();
  const __m512 largest = _mm512_set1_ps(std::numeric_limits<float>::max());
  __mmask16 nonfinite = 0;
  for (int64_t c = 0; c < k; c += 16) {
    const __mmask16 mask = first_n16(k - c);
    const __m512 v = _mm512_abs_ps(_mm512_maskz_loadu_ps(mask, x + c));
    nonfinite |= _mm512_cmp_ps_mask(v, largest, _CMP_NLE_UQ);  // NaN or infinite
    amax = _mm512_max_ps(v, amax);  // (a NaN passed over, as std::max does)
  }
  return row_quantization(_mm512_reduce_max_ps(amax), nonfinite != 0);
}

void quantize_rows_int8(const float* x, int64_t m, int64_t k, int8_t* q, int64_t ldq,
                        float* scale) {
  parallel_for(m, 8, [&](int64_t r0, int64_t r1) {
    for (int64_t r = r0; r < r1; ++r) {
      const float* xr = x + r * k;
      const RowQuantization s = quantize_row(xr, k);
      scale[r] = s.scale;
      if (s.inv == 0.0f) {  // (codes 0, as x * 0 would not give for a NaN)
        std::fill(q + r * ldq, q + (r + 1) * ldq, int8_t{0});
        continue;
      }
      const __m512 inv = _mm512_set1_ps(s.inv);
      for (int64_t c = 0; c < k; c += 16) {
        const __mmask16 mask = first_n16(k - c);
        _mm_mask_storeu_epi8(q + r * ldq + c, mask,
                             quantize16(_mm512_maskz_loadu_ps(mask, xr + c), inv));
      }
      std::fill(q + r * ldq + k, q + (r + 1) * ldq, int8_t{0});
    }
  });
}

#else

RowQuantization quantize_row(const float* x, int64_t k) { return quantize_row_scalar(x, k); }

void quantize_rows_int8(const float* x, int64_t m, int64_t k, int8_t* q, int64_t ldq,
                        float* scale) {
  quantize_rows_scalar(x, m, k, q, ldq, scale);
}

#endif

}  // namespace pg::kernels
