#include "kernels/quant.h"

#include <immintrin.h>

#include <algorithm>
#include <cmath>
#include <cstring>

#include "base/parallel.h"
#include "kernels/kernels.h"
#include "kernels/onednn.h"
#include "kernels/quant_block.h"
#include "kernels/quant_gemm.h"
#include "kernels/row_pairs.h"

namespace pg::kernels {
namespace {

constexpr int64_t B = kQuantBlock;
constexpr int64_t kQ4Group = 16;  // q4 blocks interleaved together (tensor.h)

// Activations quantized to int8 per block of 32: x ~= q * scale.
struct QuantizedRow {
  std::vector<int8_t> q;     // [nb * 32], zero padded
  std::vector<float> scale;  // [nb]
  std::vector<int32_t> sum;  // [nb]: sum of q in the block (for the q4 offset)
  // Per block -8 * sum: the q4 offset's share of the block's integer sum.
  std::vector<int32_t> q4_offset;  // [nb]
  // For q8 weights taken as unsigned bytes (w + 128): per block -128 * sum * scale, the
  // share of the 128 that the products add (sum_b ws[b] * correction[b] takes it off).
  std::vector<float> correction;  // [nb]
  // For q4 weights, x in the order of the weights' nibbles (tensor.h): per group of n <= 16
  // blocks, 32 n bytes; the low half's run t has bytes 4j..4j+3 = values 4t..4t+3 of block
  // j, the high half's (from 16 n) values 16 + 4t..16 + 4t + 3.
  std::vector<int8_t> q4_order;  // [nb * 32]
};

// x: [cols] -> out (its buffers reused when large enough).
void quantize_activations(const float* x, int64_t cols, QuantizedRow& out) {
  const int64_t nb = quant_blocks(cols);
  out.q.resize(static_cast<size_t>(nb * B));
  out.scale.resize(static_cast<size_t>(nb));
  out.sum.resize(static_cast<size_t>(nb));
  out.q4_offset.resize(static_cast<size_t>(nb));
  out.correction.resize(static_cast<size_t>(nb));
  for (int64_t b = 0; b < nb; ++b) {
    int32_t sum = 0;
    const float s =
        quantize_block(x + b * B, std::min(B, cols - b * B), out.q.data() + b * B, &sum);
    out.scale[static_cast<size_t>(b)] = s;
    out.sum[static_cast<size_t>(b)] = sum;
    out.q4_offset[static_cast<size_t>(b)] = -8 * sum;
    out.correction[static_cast<size_t>(b)] = -128.0f * static_cast<float>(sum) * s;
  }
  out.q4_order.resize(static_cast<size_t>(nb * B));
  for (int64_t b = 0; b < nb; ++b) {
    const int64_t g0 = b / kQ4Group * kQ4Group, n = std::min(kQ4Group, nb - g0);
    int8_t* group = out.q4_order.data() + g0 * B;
    const int8_t* src = out.q.data() + b * B;
    for (int64_t t = 0; t < 4; ++t) {
      std::memcpy(group + t * 4 * n + (b - g0) * 4, src + 4 * t, 4);
      std::memcpy(group + 16 * n + t * 4 * n + (b - g0) * 4, src + 16 + 4 * t, 4);
    }
  }
}

// One weight row's product with x (q8: blocks [b0, nb)), block by block in scalar code:
// each block's exact integer sum, then its two scales (q4: codes 0..15, less 8 times x's
// block sum). The q8 vector kernel's tail blocks, and whole rows without VNNI.
float q8_blocks(const int8_t* w, const float* ws, const QuantizedRow& x, int64_t b0, int64_t nb,
                int64_t cols) {
  float total = 0;
  for (int64_t b = b0; b < nb; ++b) {
    int32_t s = 0;
    for (int64_t c = b * B; c < std::min(cols, (b + 1) * B); ++c)
      s += static_cast<int32_t>(w[c]) * x.q[static_cast<size_t>(c)];
    total += static_cast<float>(s) * ws[b] * x.scale[b];
  }
  return total;
}
[[maybe_unused]] float q4_blocks(const uint8_t* w, const float* ws, const QuantizedRow& x,
                                 int64_t nb) {
  float total = 0;
  for (int64_t b = 0; b < nb; ++b) {
    uint8_t blk[B / 2];
    q4_block_bytes(w, nb, b, blk);
    const int8_t* xq = x.q.data() + b * B;
    int32_t s = 0;
    for (int64_t i = 0; i < B / 2; ++i)
      s += (blk[i] & 0x0f) * xq[i] + (blk[i] >> 4) * xq[i + B / 2];
    total += static_cast<float>(s - 8 * x.sum[b]) * ws[b] * x.scale[b];
  }
  return total;
}

#if defined(__AVX512VNNI__) && defined(__AVX512BW__)
// Scales of a product, per pair of blocks (b, b + 1): 16 lanes, ws[b] * xs[b] in lanes 0-7
// and ws[b + 1] * xs[b + 1] in 8-15. For q8 the scale products of 16 blocks are formed
// once (one multiply) and spread over the pairs by a permutation each.
inline __m512i pair_index(int64_t p) {  // lanes 0-7: 2p, lanes 8-15: 2p + 1
  return _mm512_add_epi32(_mm512_set1_epi32(static_cast<int>(2 * p)),
                          _mm512_set_epi32(1, 1, 1, 1, 1, 1, 1, 1, 0, 0, 0, 0, 0, 0, 0, 0));
}
// cs: the products of 16 blocks' weight and activation scales; pair p's lanes of them.
inline __m512 pair_scale(__m512 cs, int64_t p) { return _mm512_permutexvar_ps(pair_index(p), cs); }
inline __m512 load_scales16(const float* ws, int64_t g, int64_t nb) {
  const int64_t n = std::min<int64_t>(16, nb - g);
  return _mm512_maskz_loadu_ps(static_cast<__mmask16>((1u << n) - 1), ws + g);
}

// The decode products' software prefetch: the line 1 KiB ahead of the one being read, in
// each weight stream (rows follow each other in a stream, so near a row's end this is the
// next row's start). With two streams per thread, it read q8 rows at 45.7-48.6 GB/s
// against 39.7-42.7 without (4 of 4 alternations), q4 at 44.7 against 39.7 (mean of 6 and
// 12 runs, 2 threads, 512 MiB); 512 bytes ahead gained less, and the bf16 products (one
// instruction per line) read no faster with it.
// (The address is formed as an integer: past a matrix's last rows it points beyond the
// buffer, which a prefetch may do but pointer arithmetic may not.)
inline void prefetch_ahead(const void* p) {
  _mm_prefetch(reinterpret_cast<const char*>(  // NOLINT(performance-no-int-to-ptr): see above
                   reinterpret_cast<uintptr_t>(p) + 1024),
               _MM_HINT_T0);
}

// Dot products of NW q8 weight rows (w[j], scales ws[j]) with one quantized activation row
// into out[j], two blocks (64 bytes) per step, alternating between two accumulators per
// row; the rows share the activation loads. vpdpbusd multiplies unsigned by signed bytes:
// the weights become unsigned (w ^ 0x80 = w + 128), and the 128 times the activations'
// block sums that this adds is taken off once per row, as a dot product of the weight
// scales with x.correction (one FMA per 16 blocks), so that the loop loads only the
// weights and the activations.
template <int NW>
void dot_q8(const int8_t* const* w, const float* const* ws, const QuantizedRow& x, int64_t nb,
            int64_t cols, float* out) {
  __m512 acc[NW][2], corr[NW];
  for (int j = 0; j < NW; ++j) acc[j][0] = acc[j][1] = corr[j] = _mm512_setzero_ps();
  const __m512i flip = _mm512_set1_epi8(static_cast<char>(0x80));
  auto pair = [&](const __m512* cs, int64_t p, int64_t k, int u) {  // blocks k, k + 1
    const __m512i xv = _mm512_loadu_si512(x.q.data() + k * B);
    for (int j = 0; j < NW; ++j) prefetch_ahead(w[j] + k * B);
    for (int j = 0; j < NW; ++j) {
      const __m512i wv = _mm512_xor_si512(_mm512_loadu_si512(w[j] + k * B), flip);
      const __m512i d = _mm512_dpbusd_epi32(_mm512_setzero_si512(), wv, xv);
      acc[j][u] = _mm512_fmadd_ps(_mm512_cvtepi32_ps(d), pair_scale(cs[j], p), acc[j][u]);
    }
  };
  const int64_t full = cols / B;  // blocks of 32 whole bytes
  int64_t b = 0;
  for (; b + 16 <= full; b += 16) {  // 16 blocks per set of scale products
    const __m512 xs = _mm512_loadu_ps(x.scale.data() + b);
    const __m512 xc = _mm512_loadu_ps(x.correction.data() + b);
    __m512 cs[NW];
    for (int j = 0; j < NW; ++j) {
      const __m512 wsv = _mm512_loadu_ps(ws[j] + b);
      cs[j] = _mm512_mul_ps(wsv, xs);
      corr[j] = _mm512_fmadd_ps(wsv, xc, corr[j]);
    }
#pragma GCC unroll 4
    for (int64_t p = 0; p < 8; p += 2) {
      pair(cs, p, b + 2 * p, 0);
      pair(cs, p + 1, b + 2 * p + 2, 1);
    }
  }
  if (b + 2 <= full) {
    const __m512 xs = load_scales16(x.scale.data(), b, nb);
    const __m512 xc = load_scales16(x.correction.data(), b, nb);
    __m512 cs[NW];
    for (int j = 0; j < NW; ++j) {
      const __m512 wsv = load_scales16(ws[j], b, full / 2 * 2);  // (the whole pairs only)
      cs[j] = _mm512_mul_ps(wsv, xs);
      corr[j] = _mm512_fmadd_ps(wsv, xc, corr[j]);
    }
    for (int64_t p = 0; b + 2 <= full; ++p, b += 2) pair(cs, p, b, 0);
  }
  for (int j = 0; j < NW; ++j) {
    float total = _mm512_reduce_add_ps(_mm512_add_ps(_mm512_add_ps(acc[j][0], acc[j][1]), corr[j]));
    total += q8_blocks(w[j], ws[j], x, b, nb, cols);  // tail blocks (and a short last block)
    out[j] = total;
  }
}

// q4 for NW rows (as dot_q8), a group of 16 blocks (256 bytes a row) per step. Codes are
// unsigned (0..15), so vpdpbusd takes them directly: in each 64-byte run of a group, lane
// j holds 4 low-nibble and 4 high-nibble codes of block j (tensor.h), and x.q4_order holds
// x in the same order, so the low and high nibbles need only masking and a shift. Lane j
// of the integer sums then is block j's whole sum; it starts at -8 times x's block sum
// (the codes' offset), and is scaled once per group (one convert, one FMA). A last group of
// n < 16 blocks reads runs of 4 n bytes through masked loads.
template <int NW>
void dot_q4(const uint8_t* const* w, const float* const* ws, const QuantizedRow& x, int64_t nb,
            float* out) {
  __m512 acc[NW];
  for (int j = 0; j < NW; ++j) acc[j] = _mm512_setzero_ps();
  const __m512i mask = _mm512_set1_epi8(0x0f);
  auto group = [&](int64_t g0, int64_t n, __mmask16 lanes) {
    const int8_t* xg = x.q4_order.data() + g0 * B;
    const __m512i off = _mm512_maskz_loadu_epi32(lanes, x.q4_offset.data() + g0);
    __m512i lo[NW], hi[NW];
    for (int j = 0; j < NW; ++j) {
      lo[j] = off;
      hi[j] = _mm512_setzero_si512();
    }
#pragma GCC unroll 4
    for (int64_t t = 0; t < 4; ++t) {
      const __m512i xl = _mm512_maskz_loadu_epi32(lanes, xg + t * 4 * n);
      const __m512i xh = _mm512_maskz_loadu_epi32(lanes, xg + (16 + 4 * t) * n);
      for (int j = 0; j < NW; ++j) prefetch_ahead(w[j] + g0 * (B / 2) + t * 4 * n);
      for (int j = 0; j < NW; ++j) {
        const __m512i packed = _mm512_maskz_loadu_epi32(lanes, w[j] + g0 * (B / 2) + t * 4 * n);
        lo[j] = _mm512_dpbusd_epi32(lo[j], _mm512_and_si512(packed, mask), xl);
        hi[j] =
            _mm512_dpbusd_epi32(hi[j], _mm512_and_si512(_mm512_srli_epi16(packed, 4), mask), xh);
      }
    }
    const __m512 xs = _mm512_maskz_loadu_ps(lanes, x.scale.data() + g0);
    for (int j = 0; j < NW; ++j) {
      const __m512 cs = _mm512_mul_ps(_mm512_maskz_loadu_ps(lanes, ws[j] + g0), xs);
      acc[j] = _mm512_fmadd_ps(_mm512_cvtepi32_ps(_mm512_add_epi32(lo[j], hi[j])), cs, acc[j]);
    }
  };
  int64_t g0 = 0;
  for (; g0 + kQ4Group <= nb; g0 += kQ4Group) group(g0, kQ4Group, 0xffff);
  if (g0 < nb) group(g0, nb - g0, static_cast<__mmask16>((1u << (nb - g0)) - 1));
  for (int j = 0; j < NW; ++j) out[j] = _mm512_reduce_add_ps(acc[j]);
}
#else
template <int NW>
void dot_q8(const int8_t* const* w, const float* const* ws, const QuantizedRow& x, int64_t nb,
            int64_t cols, float* out) {
  for (int j = 0; j < NW; ++j) out[j] = q8_blocks(w[j], ws[j], x, 0, nb, cols);
}
template <int NW>
void dot_q4(const uint8_t* const* w, const float* const* ws, const QuantizedRow& x, int64_t nb,
            float* out) {
  for (int j = 0; j < NW; ++j) out[j] = q4_blocks(w[j], ws[j], x, nb);
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
      uint8_t bytes[B / 2];
      q4_block_bytes(base, nb, b, bytes);
      std::memcpy(&q, bytes, sizeof(q));
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
          uint8_t& byte = dst[q4_code_byte(nb, b, j)];
          byte = j < B / 2 ? static_cast<uint8_t>((byte & 0xf0) | code)
                           : static_cast<uint8_t>((byte & 0x0f) | (code << 4));
        }
        q.scales[static_cast<size_t>(r * nb + b)] = s;
      }
    }
  });
  return q;
}

LineAlignedVector<uint8_t> q4_from_block_layout(const uint8_t* data, int64_t rows, int64_t cols) {
  const int64_t nb = quant_blocks(cols), row_bytes = nb * B / 2;
  LineAlignedVector<uint8_t> out(static_cast<size_t>(rows * row_bytes));
  parallel_for(rows, 64, [&](int64_t r0, int64_t r1) {
    for (int64_t r = r0; r < r1; ++r) {
      for (int64_t b = 0; b < nb; ++b) {
        for (int64_t i = 0; i < B / 2; ++i) {  // (a byte holds codes i and 16 + i in both)
          out[static_cast<size_t>(r * row_bytes + q4_code_byte(nb, b, i))] =
              data[r * row_bytes + b * B / 2 + i];
        }
      }
    }
  });
  return out;
}

LineAlignedVector<uint16_t> to_bf16(const MatrixView& w) {
  LineAlignedVector<uint16_t> out(static_cast<size_t>(w.rows * w.cols));
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
    // (thread_local: buffers keep their capacity across the ~130 products of a token.)
    thread_local std::vector<QuantizedRow> xq;
    if (xq.size() < static_cast<size_t>(m)) xq.resize(static_cast<size_t>(m));
    for (int64_t i = 0; i < m; ++i) quantize_activations(x + i * K, K, xq[static_cast<size_t>(i)]);
    const QuantizedRow* xr = xq.data();  // (the pool's threads must use this thread's)
    const int64_t row_bytes = w.row_bytes();
    // Two rows at a time, far apart (row_pairs.h), for every row of x in turn.
    for_row_pairs_small_m(
        m, N, K, bias, y, [&](int64_t ra, int64_t rb, int64_t i0, int mr, float* out) {
          const int nw = rb >= 0 ? 2 : 1;
          const int64_t r[2] = {ra, rb};
          const uint8_t* data[2] = {};
          const float* scales[2] = {};
          for (int j = 0; j < nw; ++j) {
            data[j] = static_cast<const uint8_t*>(w.data) + r[j] * row_bytes;
            scales[j] = w.scales + r[j] * nb;
          }
          const auto* data8 = reinterpret_cast<const int8_t* const*>(data);
          for (int i = 0; i < mr; ++i) {
            float d[2] = {};
            const QuantizedRow& xi = xr[i0 + i];
            if (w.dtype == DType::kI8) {
              nw == 2 ? dot_q8<2>(data8, scales, xi, nb, K, d)
                      : dot_q8<1>(data8, scales, xi, nb, K, d);
            } else {
              nw == 2 ? dot_q4<2>(data, scales, xi, nb, d) : dot_q4<1>(data, scales, xi, nb, d);
            }
            out[i] = d[0];
            out[4 + i] = d[1];
          }
        });
    return;
  }
  // Larger m: int8 x int8 products where the CPU has VNNI (quant_gemm.cc), else panels.
  if (gemm_quantized_vnni(x, m, w, bias, y)) return;
  matmul_quantized_panels(x, m, w, bias, y);
}

void matmul_quantized_panels(const float* x, int64_t m, const MatrixView& w, const float* bias,
                             float* y) {
  const int64_t N = w.rows, K = w.cols;
  const KernelTable& dense = kernels();
  const int64_t panel_rows = std::min<int64_t>(
      N, std::max<int64_t>(kPanelRows, (int64_t{1} << 22) / std::max<int64_t>(K, 1)));
  const int64_t panels = (N + panel_rows - 1) / panel_rows;
  thread_local std::vector<uint16_t> xb, wb;
  if (xb.size() < static_cast<size_t>(m * K)) xb.resize(static_cast<size_t>(m * K));
  if (wb.size() < static_cast<size_t>(panel_rows * K))
    wb.resize(static_cast<size_t>(panel_rows * K));
  uint16_t* xbp = xb.data();
  round_to_bf16(x, m * K, xbp);
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
