#include "kernels/quant.h"

#include <immintrin.h>

#include <algorithm>
#include <cmath>
#include <cstring>

#include "base/parallel.h"
#include "kernels/kernels.h"
#include "kernels/onednn.h"

namespace pg::kernels {
namespace {

constexpr int64_t B = kQuantBlock;

// Activations quantized to int8 per block of 32: x ~= q * scale.
struct QuantizedRow {
  std::vector<int8_t> q;     // [nb * 32], zero padded
  std::vector<float> scale;  // [nb]
  std::vector<int32_t> sum;  // [nb]: sum of q in the block (for the q4 offset)
  // For the vector dot products: per pair of blocks (b, b + 1) 16 lanes, 8 holding
  // scale[b] then 8 holding scale[b + 1] (0 past nb); and per block 8 * sum * scale, the
  // q4 offset's share.
  std::vector<float> lanes;   // [ceil(nb / 2) * 16]
  std::vector<float> offset;  // [nb]
};

void quantize_activations(const float* x, int64_t cols, QuantizedRow& out) {
  const int64_t nb = quant_blocks(cols);
  out.q.assign(static_cast<size_t>(nb * B), 0);
  out.scale.resize(static_cast<size_t>(nb));
  out.sum.resize(static_cast<size_t>(nb));
  out.offset.resize(static_cast<size_t>(nb));
  out.lanes.assign(static_cast<size_t>((nb + 1) / 2 * 16), 0.0f);
  for (int64_t b = 0; b < nb; ++b) {
    const int64_t c0 = b * B, c1 = std::min(cols, c0 + B);
    float amax = 0;
    for (int64_t c = c0; c < c1; ++c) amax = std::max(amax, std::fabs(x[c]));
    const float s = amax / 127.0f;
    const float inv = s > 0 ? 1.0f / s : 0.0f;
    int32_t sum = 0;
    for (int64_t c = c0; c < c1; ++c) {
      const int v = static_cast<int>(std::lrintf(x[c] * inv));
      out.q[static_cast<size_t>(c)] = static_cast<int8_t>(v);
      sum += v;
    }
    out.scale[static_cast<size_t>(b)] = s;
    out.sum[static_cast<size_t>(b)] = sum;
    out.offset[static_cast<size_t>(b)] = 8.0f * static_cast<float>(sum) * s;
    std::fill_n(out.lanes.begin() + (b / 2) * 16 + (b % 2) * 8, 8, s);
  }
}

#if defined(__AVX512VNNI__) && defined(__AVX512BW__)
// The 16 scales of blocks (b, b + 1) for a product: weight scales in lanes 0-7 and 8-15,
// times the activations' (precomputed lanes).
inline __m512 pair_scale(const float* ws, const QuantizedRow& x, int64_t b) {
  const __m512 w = _mm512_mask_blend_ps(0x00ff, _mm512_set1_ps(ws[b + 1]), _mm512_set1_ps(ws[b]));
  return _mm512_mul_ps(w, _mm512_loadu_ps(x.lanes.data() + b * 8));
}

// Dot products of one q8 weight row with one quantized activation row, two blocks
// (64 bytes) per step, alternating between two accumulators: vpdpbusd needs an unsigned
// operand, so it takes |w| and x with w's sign.
float dot_q8(const int8_t* w, const float* ws, const QuantizedRow& x, int64_t nb, int64_t cols) {
  __m512 acc0 = _mm512_setzero_ps(), acc1 = _mm512_setzero_ps();
  auto pair = [&](int64_t b) {  // blocks b, b + 1: d lanes 0-7 belong to b, 8-15 to b + 1
    const __m512i wv = _mm512_loadu_si512(w + b * B);
    const __m512i xv = _mm512_loadu_si512(x.q.data() + b * B);
    const __mmask64 neg = _mm512_movepi8_mask(wv);
    const __m512i xs = _mm512_mask_sub_epi8(xv, neg, _mm512_setzero_si512(), xv);
    const __m512i d = _mm512_dpbusd_epi32(_mm512_setzero_si512(), _mm512_abs_epi8(wv), xs);
    return _mm512_mul_ps(_mm512_cvtepi32_ps(d), pair_scale(ws, x, b));
  };
  int64_t b = 0;
  for (; b + 4 <= nb && (b + 4) * B <= cols; b += 4) {
    acc0 = _mm512_add_ps(acc0, pair(b));
    acc1 = _mm512_add_ps(acc1, pair(b + 2));
  }
  for (; b + 2 <= nb && (b + 2) * B <= cols; b += 2) acc0 = _mm512_add_ps(acc0, pair(b));
  float total = _mm512_reduce_add_ps(_mm512_add_ps(acc0, acc1));
  for (; b < nb; ++b) {  // tail blocks (and a short last block)
    const int64_t c0 = b * B, c1 = std::min(cols, c0 + B);
    int32_t s = 0;
    for (int64_t c = c0; c < c1; ++c) s += static_cast<int32_t>(w[c]) * x.q[static_cast<size_t>(c)];
    total += static_cast<float>(s) * ws[b] * x.scale[b];
  }
  return total;
}

// q4: codes are unsigned (0..15), so vpdpbusd takes them directly; the -8 offset is
// applied per block with the activations' block sums (sum_b ws[b] * offset[b], a vector
// dot product of its own).
float dot_q4(const uint8_t* w, const float* ws, const QuantizedRow& x, int64_t nb) {
  __m512 acc0 = _mm512_setzero_ps(), acc1 = _mm512_setzero_ps();
  const __m512i mask = _mm512_set1_epi8(0x0f);
  const __m512i idx_a = _mm512_set_epi64(11, 10, 3, 2, 9, 8, 1, 0);
  const __m512i idx_b = _mm512_set_epi64(15, 14, 7, 6, 13, 12, 5, 4);
  int64_t b = 0;
  for (; b + 4 <= nb; b += 4) {
    // 4 blocks = 64 packed bytes: per 16-byte block, low nibbles are codes 0-15, high 16-31.
    const __m512i packed = _mm512_loadu_si512(w + b * (B / 2));
    const __m512i low = _mm512_and_si512(packed, mask);
    const __m512i high = _mm512_and_si512(_mm512_srli_epi16(packed, 4), mask);
    // Bring codes into element order: block k = [low_k (16), high_k (16)].
    const __m512i codes01 = _mm512_permutex2var_epi64(low, idx_a, high);  // blocks b, b+1
    const __m512i codes23 = _mm512_permutex2var_epi64(low, idx_b, high);  // blocks b+2, b+3
    const __m512i x01 = _mm512_loadu_si512(x.q.data() + b * B);
    const __m512i x23 = _mm512_loadu_si512(x.q.data() + (b + 2) * B);
    const __m512i d01 = _mm512_dpbusd_epi32(_mm512_setzero_si512(), codes01, x01);
    const __m512i d23 = _mm512_dpbusd_epi32(_mm512_setzero_si512(), codes23, x23);
    acc0 = _mm512_fmadd_ps(_mm512_cvtepi32_ps(d01), pair_scale(ws, x, b), acc0);
    acc1 = _mm512_fmadd_ps(_mm512_cvtepi32_ps(d23), pair_scale(ws, x, b + 2), acc1);
  }
  // The offset over the blocks done above: sum_k ws[k] * offset[k], k < b.
  __m512 off = _mm512_setzero_ps();
  for (int64_t k = 0; k < b; k += 16) {
    const __mmask16 m = static_cast<__mmask16>(b - k >= 16 ? 0xffff : (1u << (b - k)) - 1);
    off = _mm512_fmadd_ps(_mm512_maskz_loadu_ps(m, ws + k),
                          _mm512_maskz_loadu_ps(m, x.offset.data() + k), off);
  }
  float total = _mm512_reduce_add_ps(_mm512_sub_ps(_mm512_add_ps(acc0, acc1), off));
  for (; b < nb; ++b) {
    const uint8_t* blk = w + b * (B / 2);
    int32_t s = 0;
    for (int64_t j = 0; j < B / 2; ++j) {
      s += (blk[j] & 0x0f) * x.q[static_cast<size_t>(b * B + j)];
      s += (blk[j] >> 4) * x.q[static_cast<size_t>(b * B + j + B / 2)];
    }
    total += static_cast<float>(s - 8 * x.sum[b]) * ws[b] * x.scale[b];
  }
  return total;
}
#else
float dot_q8(const int8_t* w, const float* ws, const QuantizedRow& x, int64_t nb, int64_t cols) {
  float total = 0;
  for (int64_t b = 0; b < nb; ++b) {
    int32_t s = 0;
    for (int64_t c = b * B; c < std::min(cols, (b + 1) * B); ++c)
      s += w[c] * x.q[static_cast<size_t>(c)];
    total += static_cast<float>(s) * ws[b] * x.scale[b];
  }
  return total;
}
float dot_q4(const uint8_t* w, const float* ws, const QuantizedRow& x, int64_t nb) {
  float total = 0;
  for (int64_t b = 0; b < nb; ++b) {
    const uint8_t* blk = w + b * (B / 2);
    int32_t s = 0;
    for (int64_t j = 0; j < B / 2; ++j) {
      s += (blk[j] & 0x0f) * x.q[static_cast<size_t>(b * B + j)];
      s += (blk[j] >> 4) * x.q[static_cast<size_t>(b * B + j + B / 2)];
    }
    total += static_cast<float>(s - 8 * x.sum[b]) * ws[b] * x.scale[b];
  }
  return total;
}
#endif

// Row r of a quantized matrix to bf16, block by block (the panel path's hot loop): 16
// codes at a time widened to float, scaled, and rounded to bf16 (nearest even) in vector
// registers. Codes times a scale are finite, so the NaN case of f32_to_bf16 cannot arise.
void dequantize_row_bf16(const MatrixView& w, int64_t r, uint16_t* out) {
  typedef float f32x16 __attribute__((vector_size(64)));
  typedef int32_t i32x16 __attribute__((vector_size(64)));
  typedef uint32_t u32x16 __attribute__((vector_size(64)));
  typedef uint16_t u16x16 __attribute__((vector_size(32)));
  typedef int8_t i8x16 __attribute__((vector_size(16)));
  typedef uint8_t u8x16 __attribute__((vector_size(16)));
  const int64_t nb = quant_blocks(w.cols);
  const float* s = w.scales + r * nb;
  const uint8_t* base = static_cast<const uint8_t*>(w.data) + r * w.row_bytes();
  auto to_bf16 = [](f32x16 v) {
    u32x16 bits;
    std::memcpy(&bits, &v, sizeof(bits));
    bits += 0x7fffu + ((bits >> 16) & 1u);
    return __builtin_convertvector(bits >> 16, u16x16);
  };
  uint16_t tmp[B];
  for (int64_t b = 0; b < nb; ++b) {
    const int64_t n = std::min(B, w.cols - b * B);
    f32x16 lo, hi;
    if (w.dtype == DType::kI8) {
      // q8 rows are `cols` bytes: a last block of n < 32 is read through a padded copy.
      int8_t padded[B] = {};
      const int8_t* src = reinterpret_cast<const int8_t*>(base) + b * B;
      if (n < B) src = static_cast<const int8_t*>(std::memcpy(padded, src, static_cast<size_t>(n)));
      i8x16 q0, q1;
      std::memcpy(&q0, src, sizeof(q0));
      std::memcpy(&q1, src + 16, sizeof(q1));
      lo = __builtin_convertvector(__builtin_convertvector(q0, i32x16), f32x16);
      hi = __builtin_convertvector(__builtin_convertvector(q1, i32x16), f32x16);
    } else {
      u8x16 q;
      std::memcpy(&q, base + b * (B / 2), sizeof(q));
      const i32x16 codes = __builtin_convertvector(q, i32x16);
      lo = __builtin_convertvector((codes & 0x0f) - 8, f32x16);
      hi = __builtin_convertvector((codes >> 4) - 8, f32x16);
    }
    const u16x16 l16 = to_bf16(lo * s[b]), h16 = to_bf16(hi * s[b]);
    uint16_t* dst = n == B ? out + b * B : tmp;
    std::memcpy(dst, &l16, sizeof(l16));
    std::memcpy(dst + 16, &h16, sizeof(h16));
    if (n < B) std::memcpy(out + b * B, tmp, static_cast<size_t>(n) * sizeof(uint16_t));
  }
}

// Rows of x at or below this count use int8 dot products; above, dequantized panels.
constexpr int64_t kDotRows = 8;
// The decode product prefetches the weight row this many rows ahead.
constexpr int64_t kPrefetchRows = 2;
constexpr int64_t kPanelRows = 64;

}  // namespace

QuantizedMatrix quantize_q8(const MatrixView& w) {
  QuantizedMatrix q;
  q.dtype = DType::kI8;
  q.rows = w.rows;
  q.cols = w.cols;
  const int64_t nb = quant_blocks(w.cols);
  q.data.resize(static_cast<size_t>(w.rows * w.cols));
  q.scales.resize(static_cast<size_t>(w.rows * nb));
  parallel_for(w.rows, 16, [&](int64_t r0, int64_t r1) {
    std::vector<float> row(static_cast<size_t>(w.cols));
    for (int64_t r = r0; r < r1; ++r) {
      dequantize_row(w, r, row.data());
      auto* dst = reinterpret_cast<int8_t*>(q.data.data()) + r * w.cols;
      for (int64_t b = 0; b < nb; ++b) {
        const int64_t c0 = b * B, c1 = std::min(w.cols, c0 + B);
        float amax = 0;
        for (int64_t c = c0; c < c1; ++c)
          amax = std::max(amax, std::fabs(row[static_cast<size_t>(c)]));
        const float s = amax / 127.0f;
        const float inv = s > 0 ? 1.0f / s : 0.0f;
        for (int64_t c = c0; c < c1; ++c) {
          dst[c] = static_cast<int8_t>(
              std::clamp<long>(std::lrintf(row[static_cast<size_t>(c)] * inv), -127, 127));
        }
        q.scales[static_cast<size_t>(r * nb + b)] = s;
      }
    }
  });
  return q;
}

QuantizedMatrix quantize_q4(const MatrixView& w) {
  QuantizedMatrix q;
  q.dtype = DType::kU8;
  q.rows = w.rows;
  q.cols = w.cols;
  const int64_t nb = quant_blocks(w.cols);
  q.data.assign(static_cast<size_t>(w.rows * nb * B / 2), 0x88);
  q.scales.resize(static_cast<size_t>(w.rows * nb));
  parallel_for(w.rows, 16, [&](int64_t r0, int64_t r1) {
    std::vector<float> row(static_cast<size_t>(w.cols));
    for (int64_t r = r0; r < r1; ++r) {
      dequantize_row(w, r, row.data());
      uint8_t* dst = q.data.data() + r * nb * B / 2;
      for (int64_t b = 0; b < nb; ++b) {
        const int64_t c0 = b * B, c1 = std::min(w.cols, c0 + B);
        float m = 0;
        for (int64_t c = c0; c < c1; ++c) {
          if (std::fabs(row[static_cast<size_t>(c)]) > std::fabs(m))
            m = row[static_cast<size_t>(c)];
        }
        const float s = m / -8.0f;
        const float inv = s != 0 ? 1.0f / s : 0.0f;
        for (int64_t c = c0; c < c1; ++c) {
          const int code = static_cast<int>(
              std::clamp<long>(std::lrintf(row[static_cast<size_t>(c)] * inv) + 8, 0, 15));
          const int64_t j = c - c0;
          uint8_t& byte = dst[b * B / 2 + (j % (B / 2))];
          byte = j < B / 2 ? static_cast<uint8_t>((byte & 0xf0) | code)
                           : static_cast<uint8_t>((byte & 0x0f) | (code << 4));
        }
        q.scales[static_cast<size_t>(r * nb + b)] = s;
      }
    }
  });
  return q;
}

std::vector<uint16_t> to_bf16(const MatrixView& w) {
  std::vector<uint16_t> out(static_cast<size_t>(w.rows * w.cols));
  parallel_for(w.rows, 16, [&](int64_t r0, int64_t r1) {
    std::vector<float> row(static_cast<size_t>(w.cols));
    for (int64_t r = r0; r < r1; ++r) {
      dequantize_row(w, r, row.data());
      for (int64_t c = 0; c < w.cols; ++c)
        out[static_cast<size_t>(r * w.cols + c)] = f32_to_bf16(row[static_cast<size_t>(c)]);
    }
  });
  return out;
}

void matmul_quantized(const float* x, int64_t m, const MatrixView& w, const float* bias, float* y) {
  const int64_t nb = quant_blocks(w.cols), N = w.rows, K = w.cols;
  if (m <= kDotRows) {
    std::vector<QuantizedRow> xq(static_cast<size_t>(m));
    for (int64_t i = 0; i < m; ++i) quantize_activations(x + i * K, K, xq[static_cast<size_t>(i)]);
    const int64_t row_bytes = w.row_bytes();
    parallel_for(N, 64, [&](int64_t n0, int64_t n1) {
      for (int64_t n = n0; n < n1; ++n) {
        const uint8_t* row = static_cast<const uint8_t*>(w.data) + n * row_bytes;
        const float* ws = w.scales + n * nb;
        // Rows are often one 4 KiB page or less, and the hardware prefetchers stop at page
        // boundaries: fetch the row after next (and its scales) into L2 now.
        if (n + kPrefetchRows < n1) {
          const uint8_t* ahead = row + kPrefetchRows * row_bytes;
          for (int64_t off = 0; off < row_bytes; off += 64) __builtin_prefetch(ahead + off, 0, 2);
          __builtin_prefetch(ws + kPrefetchRows * nb, 0, 2);
        }
        for (int64_t i = 0; i < m; ++i) {
          const float d = w.dtype == DType::kI8 ? dot_q8(reinterpret_cast<const int8_t*>(row), ws,
                                                         xq[static_cast<size_t>(i)], nb, K)
                                                : dot_q4(row, ws, xq[static_cast<size_t>(i)], nb);
          y[i * N + n] = d + (bias != nullptr ? bias[n] : 0.0f);
        }
      }
    });
    return;
  }
  // Larger m: x rounded to bf16 once, then panels of weight rows dequantized to bf16 and
  // multiplied by oneDNN's bf16 GEMM straight into their columns of y (or, where oneDNN
  // cannot, by the dense float32 product).
  const KernelTable& dense = kernels();
  const int64_t panel_rows = std::min<int64_t>(
      N, std::max<int64_t>(kPanelRows, (int64_t{1} << 22) / std::max<int64_t>(K, 1)));
  const int64_t panels = (N + panel_rows - 1) / panel_rows;
  thread_local std::vector<uint16_t> xb, wb;
  if (xb.size() < static_cast<size_t>(m * K)) xb.resize(static_cast<size_t>(m * K));
  if (wb.size() < static_cast<size_t>(panel_rows * K))
    wb.resize(static_cast<size_t>(panel_rows * K));
  uint16_t* xbp = xb.data();
  parallel_for(m * K, 1 << 16, [&](int64_t b, int64_t e) {
    for (int64_t i = b; i < e; ++i) xbp[i] = f32_to_bf16(x[i]);
  });
  uint16_t* wbp = wb.data();  // (thread_local: the pool's threads must use this thread's)
  std::vector<float> ypanel;
  for (int64_t p = 0; p < panels; ++p) {
    const int64_t r0 = p * panel_rows, rows = std::min(panel_rows, N - r0);
    parallel_for(rows, 8, [&](int64_t a, int64_t b) {
      for (int64_t r = a; r < b; ++r) dequantize_row_bf16(w, r0 + r, wbp + r * K);
    });
    const float* pbias = bias != nullptr ? bias + r0 : nullptr;
    if (onednn_matmul_bf16_rounded(xbp, m, wbp, rows, K, pbias, y + r0, N)) continue;
    ypanel.resize(static_cast<size_t>(m * rows));
    dense.matmul(x, m, MatrixView{DType::kBF16, wbp, rows, K, nullptr}, pbias, ypanel.data());
    for (int64_t i = 0; i < m; ++i) {
      std::memcpy(y + i * N + r0, ypanel.data() + i * rows,
                  static_cast<size_t>(rows) * sizeof(float));
    }
  }
}

}  // namespace pg::kernels
