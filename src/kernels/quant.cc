#include "kernels/quant.h"

#include <immintrin.h>

#include <algorithm>
#include <atomic>
#include <bit>
#include <cmath>
#include <cstring>

#include "base/cpu.h"
#include "base/parallel.h"
#include "kernels/in_register.h"
#include "kernels/kernels.h"
#include "kernels/lane_masks.h"
#include "kernels/onednn.h"
#include "kernels/quant_block.h"
#include "kernels/quant_gemm.h"
#include "kernels/row_pairs.h"

namespace pg::kernels {
namespace {

constexpr int64_t B = kQuantBlock;

// Activations quantized to int8 per block of 32: x ~= q * scale.
struct QuantizedRow {
  std::vector<int8_t> q;     // [nb * 32], zero padded
  std::vector<float> scale;  // [nb]
  std::vector<int32_t> sum;  // [nb]: sum of q in the block (for the weights' offsets)
  // q in the weights' group order (tensor.h): per group of n <= 16 blocks, 32 n bytes in
  // runs of 4 n; bytes 4j..4j+3 of run t = values 4t..4t+3 of the group's block j. (q8
  // weights are in this order; q4 weights' low nibbles match runs 0-3, high nibbles 4-7.)
  LineAlignedVector<int8_t> grouped;  // [nb * 32] (line-aligned: no load splits a line)
};

// x: [cols] -> out (its buffers reused when large enough).
void quantize_activations(const float* x, int64_t cols, QuantizedRow& out) {
  const int64_t nb = quant_blocks(cols);
  out.q.resize(static_cast<size_t>(nb * B));
  out.scale.resize(static_cast<size_t>(nb));
  out.sum.resize(static_cast<size_t>(nb));
  out.grouped.resize(static_cast<size_t>(nb * B));
  for (int64_t b = 0; b < nb; ++b) {
    int32_t sum = 0;
    const float s =
        quantize_block(x + b * B, std::min(B, cols - b * B), out.q.data() + b * B, &sum);
    out.scale[static_cast<size_t>(b)] = s;
    out.sum[static_cast<size_t>(b)] = sum;
  }
  for (int64_t g0 = 0; g0 < nb; g0 += kQuantGroup) {  // (group_byte's order, a group at a time)
    const int64_t n = std::min(kQuantGroup, nb - g0);
    int8_t* group = out.grouped.data() + g0 * B;
    for (int64_t j = 0; j < n; ++j) {
      for (int64_t t = 0; t < B / 4; ++t)
        std::memcpy(group + t * 4 * n + 4 * j, out.q.data() + (g0 + j) * B + 4 * t, 4);
    }
  }
}

// One weight row's product with x, block by block in scalar code: each block's exact
// integer sum (q4: codes 0..15, less 8 times x's block sum), then its two scales. Rows
// without VNNI. (q8 with row scales: the row's first scale for every block.)
[[maybe_unused]] float q8_row(const uint8_t* w, const float* ws, const QuantizedRow& x, int64_t nb,
                              bool row_scale = false) {
  float total = 0;
  for (int64_t b = 0; b < nb; ++b) {
    uint8_t blk[B];
    gather_block(w, nb, B, b, blk);
    const int8_t* xq = x.q.data() + b * B;
    int32_t s = 0;
    for (int64_t i = 0; i < B; ++i) s += static_cast<int8_t>(blk[i]) * xq[i];
    total += static_cast<float>(s) * ws[row_scale ? 0 : b] * x.scale[b];
  }
  return total;
}
[[maybe_unused]] float q4_row(const uint8_t* w, const float* ws, const QuantizedRow& x,
                              int64_t nb) {
  float total = 0;
  for (int64_t b = 0; b < nb; ++b) {
    uint8_t blk[B / 2];
    gather_block(w, nb, B / 2, b, blk);
    const int8_t* xq = x.q.data() + b * B;
    int32_t s = 0;
    for (int64_t i = 0; i < B / 2; ++i)
      s += (blk[i] & 0x0f) * xq[i] + (blk[i] >> 4) * xq[i + B / 2];
    total += static_cast<float>(s - 8 * x.sum[b]) * ws[b] * x.scale[b];
  }
  return total;
}

#if defined(__AVX512VNNI__) && defined(__AVX512BW__)
// The decode products' software prefetch, in each weight row's two streams: its codes 2 KiB
// ahead of the line being read into L1 and 6 KiB ahead into L2 (prefetch_decode_stream,
// quant.h; rows follow each other in a stream, so near a row's end this is the next row's
// start), and its scales 512 bytes ahead, once per group of 16
// blocks (8 groups ahead in q4, as the codes are; the scales are a stream of their own,
// a fifth of q4's bytes and a ninth of q8's). Measured on the decode products of
// PaliGemma 2's layers (kernels_bench BM_decode_layers, 2 threads, 512 MiB; the CPU was not
// recorded): codes 1 KiB ahead and scales left to the hardware read q8 at 38-43 GB/s and
// q4 at 35-47, against 50-55 and 46-48 with both prefetched as here (three alternations;
// scales 256 or 1024 bytes ahead, codes 1.5 or 3 KiB, or a second prefetch into L2 gained
// less). Without any prefetch, q8 read 39.7-42.7 and q4 39.7 against 45.7-48.6 and 44.7
// with the codes' 1 KiB ahead (session 7). The bf16 products (one instruction per line)
// read no faster with one there; on an Intel Emerald Rapids they do (fast.cc,
// dot_rows_bf16), as q8 does (gemma2 layers, median time ratio 0.83: 28.1 against 23.5
// GB/s), and they follow this mode too.
// On AMD family 0x19 (Zen 4; measured on an EPYC of model 0x11) the hardware prefetchers
// do better alone: PaliGemma 2's and PaliGemma's layers (512 MiB, 2 threads), passes with
// and without the prefetches interleaved in one process (bench/decode_prefetch_ab: ABBA,
// 32 passes, median ratio of neighbouring passes), read q8 12-16% faster without them and
// q4 0-6% (q8 41.8 -> 48.5 GB/s and q4 38.5 -> 40.8 on PaliGemma 2's, best passes). Codes
// 1 or 4 KiB ahead, or 2 KiB plus an L2 prefetch 8 KiB ahead, were slower than none; an
// L2 prefetch 4 KiB ahead alone was equal to none. There the products run without them.
// (Addresses are formed as integers: past a matrix's last rows they point beyond the
// buffer, which a prefetch may do but pointer arithmetic may not.)
constexpr uintptr_t kScalesAhead = 512;

inline void prefetch_at(const void* p, uintptr_t ahead) {
  _mm_prefetch(reinterpret_cast<const char*>(  // NOLINT(performance-no-int-to-ptr): see above
                   reinterpret_cast<uintptr_t>(p) + ahead),
               _MM_HINT_T0);
}

// Dot products of NW quantized weight rows (w[j], scales ws[j]) with one quantized
// activation row into out[j], a group of 16 blocks per step; the rows share the
// activation loads. In each 64-byte run of a group (tensor.h), lane j holds 4 bytes of
// block j, and x.grouped holds x in the same order, so lane j of vpdpbusd's int32 sums is
// block j's whole sum, scaled once per group (one convert, one FMA per 16 blocks). A last
// group of n < 16 blocks reads runs of 4 n bytes through masked loads (zeros beyond).
// vpdpbusd multiplies unsigned by signed bytes:
//   q8 (Q4 = false): weights become unsigned, w ^ 0x80 = w + 128, and each block's sum
//     starts at -128 times x's block sum to take that off; 8 runs a group.
//   q4 (Q4 = true): codes are unsigned (0..15); low nibbles (x runs 0-3) and high nibbles
//     (x runs 4-7) of 4 runs; the sums start at -8 times x's block sums (the codes' offset).
//     The high nibbles are taken in place (byte & 0xf0: 16 times the code, still an
//     unsigned byte), so their sum is 16 times theirs, shifted right by 4 once per group
//     (exact): one instruction less per run than shifting each run down. (Alternating in
//     one process, 16 rounds: decode_q4_1x9216x2304 and 1x8192x2048, weights in L3, 2.6%
//     and 3.3% faster; BM_decode_layers, from memory, equal.)
// Two sums per row (alternate runs) keep the vpdpbusd chains short.
// RowScale (q8 with row_scales, the w8a8 mode): every block of a row has the scale of its
// first, which is read instead of the row's scales: the same values bit for bit, without
// the scales' stream (a ninth of q8's bytes).
template <bool Q4, int NW, bool Prefetch, bool RowScale = false>
void dot_grouped(const uint8_t* const* w, const float* const* ws, const QuantizedRow& x, int64_t nb,
                 float* out) {
  constexpr int64_t kBlockBytes = Q4 ? B / 2 : B;
  __m512 acc[NW];
  for (int j = 0; j < NW; ++j) acc[j] = _mm512_setzero_ps();
  const __m512i nibble = _mm512_set1_epi8(0x0f);
  const __m512i flip = _mm512_set1_epi8(static_cast<char>(0x80));
  auto group = [&](int64_t g0, int64_t n, __mmask16 lanes) {
    const int8_t* xg = x.grouped.data() + g0 * B;
    const __m512i xsum = _mm512_maskz_loadu_epi32(lanes, x.sum.data() + g0);
    const __m512i off =
        _mm512_sub_epi32(_mm512_setzero_si512(), _mm512_slli_epi32(xsum, Q4 ? 3 : 7));
    __m512i d[NW][2];
    for (int j = 0; j < NW; ++j) {
      d[j][0] = off;
      d[j][1] = _mm512_setzero_si512();
    }
    // (q4: each vector loaded once, into a register. Left to itself, GCC folds the load
    // into every instruction that uses it: x once per weight row, each run of codes twice
    // (the two nibbles), 32 loads per group of two rows where 16 do. kernels_bench,
    // alternated with the folded build: BM_decode_layers/gemma2_q4 37.5-45.3 -> 50.2-52.1
    // GB/s, gemma_q4 44.9-47.7 -> 49.9-52.5. q8's x held the same way read slower in cache,
    // decode_q8_1x16384x2048 50-62 against 61-77 GB/s, so q8 is left to the compiler.)
    auto x_run = [&](int64_t t) {
      __m512i v = _mm512_maskz_loadu_epi32(lanes, xg + t * 4 * n);
      if constexpr (Q4) in_register(v);
      return v;
    };
    constexpr int64_t kRuns = kBlockBytes / 4;
#pragma GCC unroll 8
    for (int64_t t = 0; t < kRuns; ++t) {
      const int64_t at = g0 * kBlockBytes + t * 4 * n;
      if constexpr (Prefetch) {
        for (int j = 0; j < NW; ++j) prefetch_decode_stream(w[j] + at);
      }
      if constexpr (Q4) {
        const __m512i xl = x_run(t), xh = x_run(4 + t);
        for (int j = 0; j < NW; ++j) {
          __m512i packed = _mm512_maskz_loadu_epi32(lanes, w[j] + at);
          in_register(packed);
          d[j][0] = _mm512_dpbusd_epi32(d[j][0], _mm512_and_si512(packed, nibble), xl);
          d[j][1] = _mm512_dpbusd_epi32(d[j][1], _mm512_andnot_si512(nibble, packed), xh);
        }
      } else {
        const __m512i xv = x_run(t);
        for (int j = 0; j < NW; ++j) {
          const __m512i wv = _mm512_xor_si512(_mm512_maskz_loadu_epi32(lanes, w[j] + at), flip);
          d[j][t & 1] = _mm512_dpbusd_epi32(d[j][t & 1], wv, xv);
        }
      }
    }
    if constexpr (Prefetch && !RowScale) {
      for (int j = 0; j < NW; ++j) prefetch_at(ws[j] + g0, kScalesAhead);
    }
    const __m512 xs = _mm512_maskz_loadu_ps(lanes, x.scale.data() + g0);
    for (int j = 0; j < NW; ++j) {
      const __m512 wsv = RowScale ? _mm512_maskz_mov_ps(lanes, _mm512_set1_ps(ws[j][0]))
                                  : _mm512_maskz_loadu_ps(lanes, ws[j] + g0);
      const __m512 cs = _mm512_mul_ps(wsv, xs);
      const __m512i hi = Q4 ? _mm512_srai_epi32(d[j][1], 4) : d[j][1];
      acc[j] = _mm512_fmadd_ps(_mm512_cvtepi32_ps(_mm512_add_epi32(d[j][0], hi)), cs, acc[j]);
    }
  };
  int64_t g0 = 0;
  for (; g0 + kQuantGroup <= nb; g0 += kQuantGroup) group(g0, kQuantGroup, 0xffff);
  if (g0 < nb) group(g0, nb - g0, first_n16(nb - g0));
  for (int j = 0; j < NW; ++j) out[j] = _mm512_reduce_add_ps(acc[j]);
}
#else
template <bool Q4, int NW, bool Prefetch, bool RowScale = false>
void dot_grouped(const uint8_t* const* w, const float* const* ws, const QuantizedRow& x, int64_t nb,
                 float* out) {
  for (int j = 0; j < NW; ++j)
    out[j] = Q4 ? q4_row(w[j], ws[j], x, nb) : q8_row(w[j], ws[j], x, nb, RowScale);
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
      uint8_t bytes[B];  // (a short last block is padded with zeros)
      gather_block(base, nb, B, b, bytes);
      i8x16 q0, q1;
      std::memcpy(&q0, bytes, sizeof(q0));
      std::memcpy(&q1, bytes + 16, sizeof(q1));
      lo = __builtin_convertvector(__builtin_convertvector(q0, i32x16), f32x16);
      hi = __builtin_convertvector(__builtin_convertvector(q1, i32x16), f32x16);
    } else {
      u8x16 q;
      uint8_t bytes[B / 2];
      gather_block(base, nb, B / 2, b, bytes);
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

// [q4][prefetch][rows - 1]: dot_grouped for one weight row or two.
using DotFn = void (*)(const uint8_t* const*, const float* const*, const QuantizedRow&, int64_t,
                       float*);
// [q8, q4, q8 with row scales][prefetch][rows - 1]
constexpr DotFn kDot[3][2][2] = {
    {{dot_grouped<false, 1, false>, dot_grouped<false, 2, false>},
     {dot_grouped<false, 1, true>, dot_grouped<false, 2, true>}},
    {{dot_grouped<true, 1, false>, dot_grouped<true, 2, false>},
     {dot_grouped<true, 1, true>, dot_grouped<true, 2, true>}},
    {{dot_grouped<false, 1, false, true>, dot_grouped<false, 2, false, true>},
     {dot_grouped<false, 1, true, true>, dot_grouped<false, 2, true, true>}}};

std::atomic<int> decode_prefetch_mode{-1};

// Rows of x at or below this count use int8 dot products; above, dequantized panels.
constexpr int64_t kDotRows = 8;
constexpr int64_t kPanelRows = 64;

}  // namespace

void set_decode_prefetch(int mode) { decode_prefetch_mode.store(mode < 0 ? -1 : mode > 0 ? 1 : 0); }

bool decode_prefetch() {
  const int mode = decode_prefetch_mode.load(std::memory_order_relaxed);
  if (mode >= 0) return mode == 1;
  static const bool by_cpu = !(cpu_id().amd && cpu_id().family == 0x19);
  return by_cpu;
}

namespace {

// One block of n <= 32 values (x), quantized into `bytes` (q8: 32 codes; q4: 16 bytes, byte
// i = code i | code 16 + i << 4), in plain scalar code: the reference twin of the vector
// blocks below. Values past n are code 0 (q8) or 8 (q4). Returns the block's scale.
// q8: s = max|x| / 127, code = clamp(round(x / s), -127, 127) (NaN ignored by the maximum,
// and code -127).
// The q8 codes of n <= 32 values with scale s (q8_block_scalar's; per-row scales pass the
// row's).
void q8_codes_scalar(const float* x, int64_t n, float s, uint8_t* bytes) {
  const float inv = s > 0 ? 1.0f / s : 0.0f;
  for (int64_t i = 0; i < B; ++i) {
    const long code = i < n ? std::clamp<long>(std::lrintf(x[i] * inv), -127, 127) : 0;
    bytes[i] = static_cast<uint8_t>(static_cast<int8_t>(code));
  }
}
float q8_block_scalar(const float* x, int64_t n, uint8_t* bytes) {
  float amax = 0;
  for (int64_t i = 0; i < n; ++i) amax = std::max(amax, std::fabs(x[i]));
  const float s = amax / 127.0f;
  q8_codes_scalar(x, n, s, bytes);
  return s;
}
// q4: m = the first value of largest magnitude, s = m / -8, code = clamp(round(x / s) + 8,
// 0, 15).
float q4_block_scalar(const float* x, int64_t n, uint8_t* bytes) {
  float m = 0;
  for (int64_t i = 0; i < n; ++i) {
    if (std::fabs(x[i]) > std::fabs(m)) m = x[i];
  }
  const float s = m / -8.0f;
  const float inv = s != 0 ? 1.0f / s : 0.0f;
  int codes[B];
  for (int64_t i = 0; i < B; ++i)
    codes[i] = i < n ? static_cast<int>(std::clamp<long>(std::lrintf(x[i] * inv) + 8, 0, 15)) : 8;
  for (int64_t i = 0; i < B / 2; ++i)
    bytes[i] = static_cast<uint8_t>(codes[i] | codes[B / 2 + i] << 4);
  return s;
}

#if defined(__AVX512F__) && defined(__AVX512BW__) && defined(__AVX512VL__)
// The same for a whole block (n = 32) in vector registers, bit for bit: the maximum of
// |x| is exact in any order, vmaxps returns its second operand where either is NaN (so a
// NaN is passed over, as std::max(amax, NaN) does), and vcvtps2dq rounds as lrintf does
// (the current rounding mode), giving INT_MIN for NaN where lrintf gives LONG_MIN: both
// clamp to the lowest code. (quantize_q8 / _q4 had lrintf called per value: 2.3 s of the
// 4.7 s that PaliGemma 3B's random weights took to load as int8, 2 threads.)
inline __m512 abs_max_ps(__m512 a, __m512 b) {
  const __m512 m = _mm512_max_ps(_mm512_abs_ps(a), _mm512_setzero_ps());
  return _mm512_max_ps(_mm512_abs_ps(b), m);
}
// The codes of a whole block with scale s, as q8_codes_scalar's.
void q8_codes_vector(const float* x, float s, uint8_t* bytes) {
  const __m512 a = _mm512_loadu_ps(x), b = _mm512_loadu_ps(x + 16);
  const __m512 inv = _mm512_set1_ps(s > 0 ? 1.0f / s : 0.0f);
  auto codes = [&](__m512 v) {
    const __m512i q = _mm512_cvtps_epi32(_mm512_mul_ps(v, inv));
    return _mm512_cvtepi32_epi8(
        _mm512_max_epi32(_mm512_min_epi32(q, _mm512_set1_epi32(127)), _mm512_set1_epi32(-127)));
  };
  _mm_storeu_si128(reinterpret_cast<__m128i*>(bytes), codes(a));
  _mm_storeu_si128(reinterpret_cast<__m128i*>(bytes + 16), codes(b));
}
float q8_block_vector(const float* x, uint8_t* bytes) {
  const __m512 a = _mm512_loadu_ps(x), b = _mm512_loadu_ps(x + 16);
  const float s = _mm512_reduce_max_ps(abs_max_ps(a, b)) / 127.0f;
  q8_codes_vector(x, s, bytes);
  return s;
}
float q4_block_vector(const float* x, uint8_t* bytes) {
  const __m512 a = _mm512_loadu_ps(x), b = _mm512_loadu_ps(x + 16);
  const float amax = _mm512_reduce_max_ps(abs_max_ps(a, b));
  float m = 0;
  if (amax > 0) {  // the first value whose magnitude is amax
    const __m512 target = _mm512_set1_ps(amax);
    const uint32_t hits =
        _mm512_cmp_ps_mask(_mm512_abs_ps(a), target, _CMP_EQ_OQ) |
        static_cast<uint32_t>(_mm512_cmp_ps_mask(_mm512_abs_ps(b), target, _CMP_EQ_OQ)) << 16;
    m = x[std::countr_zero(hits)];
  }
  const float s = m / -8.0f;
  const __m512 inv = _mm512_set1_ps(s != 0 ? 1.0f / s : 0.0f);
  auto codes = [&](__m512 v) {
    const __m512i q =
        _mm512_add_epi32(_mm512_cvtps_epi32(_mm512_mul_ps(v, inv)), _mm512_set1_epi32(8));
    return _mm512_max_epi32(_mm512_min_epi32(q, _mm512_set1_epi32(15)), _mm512_setzero_si512());
  };
  const __m512i packed = _mm512_or_si512(codes(a), _mm512_slli_epi32(codes(b), 4));
  _mm_storeu_si128(reinterpret_cast<__m128i*>(bytes), _mm512_cvtepi32_epi8(packed));
  return s;
}
constexpr bool kVectorBlocks = true;
#else
void q8_codes_vector(const float* x, float s, uint8_t* bytes) { q8_codes_scalar(x, B, s, bytes); }
float q8_block_vector(const float* x, uint8_t* bytes) { return q8_block_scalar(x, B, bytes); }
float q4_block_vector(const float* x, uint8_t* bytes) { return q4_block_scalar(x, B, bytes); }
constexpr bool kVectorBlocks = false;
#endif

// w (any format) quantized to q8 (I8) or q4 (U8), whole blocks in vector registers where
// `vector` and the build has them; q8 with one scale per row where `row_scales`.
QuantizedMatrix quantize(const MatrixView& w, DType dtype, bool vector, bool row_scales = false) {
  const bool q8 = dtype == DType::kI8;
  const int64_t block_bytes = q8 ? B : B / 2;
  QuantizedMatrix q;
  q.dtype = dtype;
  q.row_scales = q8 && row_scales;
  q.rows = w.rows;
  q.cols = w.cols;
  const int64_t nb = quant_blocks(w.cols);
  q.data.resize(static_cast<size_t>(w.rows * nb * block_bytes));
  q.scales.resize(static_cast<size_t>(w.rows * nb));
  parallel_for(w.rows, 16, [&](int64_t r0, int64_t r1) {
    std::vector<float> row(static_cast<size_t>(w.cols));
    uint8_t bytes[B];
    for (int64_t r = r0; r < r1; ++r) {
      dequantize_row(w, r, row.data());
      uint8_t* dst = q.data.data() + r * nb * block_bytes;
      float row_scale = 0;  // (per row: max|w| / 127, NaN ignored, as a block's)
      if (q.row_scales) {
        for (const float v : row) row_scale = std::max(row_scale, std::fabs(v));
        row_scale /= 127.0f;
      }
      for (int64_t b = 0; b < nb; ++b) {
        const int64_t n = std::min(B, w.cols - b * B);
        const float* x = row.data() + b * B;
        const bool whole = vector && kVectorBlocks && n == B;
        float s = row_scale;
        if (q.row_scales && whole)
          q8_codes_vector(x, s, bytes);
        else if (q.row_scales)
          q8_codes_scalar(x, n, s, bytes);
        else
          s = whole ? (q8 ? q8_block_vector(x, bytes) : q4_block_vector(x, bytes))
                    : (q8 ? q8_block_scalar(x, n, bytes) : q4_block_scalar(x, n, bytes));
        q.scales[static_cast<size_t>(r * nb + b)] = s;
        for (int64_t t = 0; t < block_bytes; t += 4)  // (gather_block's inverse)
          std::memcpy(dst + group_byte(nb, block_bytes, b, t), bytes + t, 4);
      }
    }
  });
  return q;
}

}  // namespace

QuantizedMatrix quantize_q8(const MatrixView& w) { return quantize(w, DType::kI8, true); }
QuantizedMatrix quantize_q4(const MatrixView& w) { return quantize(w, DType::kU8, true); }
QuantizedMatrix quantize_q8_rows(const MatrixView& w) {
  return quantize(w, DType::kI8, true, true);
}
QuantizedMatrix quantize_reference(const MatrixView& w, DType dtype, bool row_scales) {
  return quantize(w, dtype, false, row_scales);
}

bool has_row_scales(const MatrixView& w) {
  if (w.dtype != DType::kI8 || w.scales == nullptr) return false;
  const int64_t nb = quant_blocks(w.cols);
  for (int64_t r = 0; r < w.rows; ++r) {
    const float* s = w.scales + r * nb;
    if (!std::all_of(s, s + nb, [&](float v) { return v == s[0]; })) return false;
  }
  return true;
}

LineAlignedVector<uint8_t> from_block_layout(DType dtype, const uint8_t* data, int64_t rows,
                                             int64_t cols) {
  const int64_t nb = quant_blocks(cols), block_bytes = dtype == DType::kI8 ? B : B / 2;
  // Before: q8 rows of cols bytes (unpadded), q4 rows of nb * 16.
  const int64_t old_row = dtype == DType::kI8 ? cols : nb * block_bytes;
  const int64_t row_bytes = nb * block_bytes;
  LineAlignedVector<uint8_t> out(static_cast<size_t>(rows * row_bytes), 0);
  parallel_for(rows, 64, [&](int64_t r0, int64_t r1) {
    for (int64_t r = r0; r < r1; ++r) {
      for (int64_t i = 0; i < old_row; ++i) {
        out[static_cast<size_t>(r * row_bytes +
                                group_byte(nb, block_bytes, i / block_bytes, i % block_bytes))] =
            data[r * old_row + i];
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
    const int format = w.dtype == DType::kU8 ? 1 : w.row_scales ? 2 : 0;
    const DotFn* dot = kDot[format][decode_prefetch() ? 1 : 0];
    // Two rows at a time, far apart (row_pairs.h), for every row of x in turn.
    for_row_pairs_small_m(m, N, K, bias, y,
                          [&](int64_t ra, int64_t rb, int64_t i0, int mr, float* out) {
                            const int nw = rb >= 0 ? 2 : 1;
                            const int64_t r[2] = {ra, rb};
                            const uint8_t* data[2] = {};
                            const float* scales[2] = {};
                            for (int j = 0; j < nw; ++j) {
                              data[j] = static_cast<const uint8_t*>(w.data) + r[j] * row_bytes;
                              scales[j] = w.scales + r[j] * nb;
                            }
                            for (int i = 0; i < mr; ++i) {
                              float d[2] = {};
                              dot[nw - 1](data, scales, xr[i0 + i], nb, d);
                              out[i] = d[0];
                              out[4 + i] = d[1];
                            }
                          });
    return;
  }
  // Larger m: int8 x int8 products where the CPU has VNNI (quant_gemm.cc), else panels.
  const MatmulOutput out{w, bias, y};
  if (gemm_quantized_vnni(x, m, w.cols, &out, 1)) return;
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
