// Fast kernels: OpenMP-parallel (pg::parallel_for), cache- and register-blocked loops over
// 16-float GCC vectors, which compile to AVX-512 zmm code under -march=native, to pairs
// of ymm ops on AVX2, and to scalar code elsewhere. Results match the reference table up
// to the reordering of float32 sums and to the vector exp (2 ulp) that GELU and the
// softmax use in place of std::exp / std::tanh.
#include <algorithm>
#include <array>
#include <bit>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <limits>
#include <type_traits>
#include <utility>
#include <vector>

#if defined(__AVX512F__) || defined(__F16C__)
#include <immintrin.h>
#endif

#include "base/parallel.h"
#include "kernels/amx_gemm.h"
#include "kernels/amx_w8a8.h"
#include "kernels/bf16_gemm.h"
#include "kernels/elementwise.h"
#include "kernels/in_register.h"
#include "kernels/kernels.h"
#include "kernels/lane_masks.h"
#include "kernels/onednn.h"
#include "kernels/quant.h"
#include "kernels/quant_gemm.h"
#include "kernels/row_pairs.h"
#include "kernels/transpose.h"
#include "tensor/dtype.h"

namespace pg::kernels {
namespace {

constexpr int kLanes = 16;
typedef float f32x16 __attribute__((vector_size(64)));
typedef uint16_t u16x16 __attribute__((vector_size(32)));
typedef uint32_t u32x16 __attribute__((vector_size(64)));

inline f32x16 load_f32(const float* p) {
  f32x16 v;
  std::memcpy(&v, p, sizeof(v));
  return v;
}
inline void store_f32(float* p, f32x16 v) { std::memcpy(p, &v, sizeof(v)); }
inline f32x16 splat(float c) { return f32x16{} + c; }
constexpr f32x16 kLaneIndex = {0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15};

typedef int32_t i32x16 __attribute__((vector_size(64)));

// e^x per lane: Cephes' expf (x = n ln2 + r with ln2 split in two, a degree-6 polynomial
// for e^r, 2^n built in the exponent bits), within 2 ulp of the true value. x is clamped
// to [-87, 88], inside float's normal range, so e^x never over- or underflows (a lane
// below -87 gives e^-87 = 1.6e-38 rather than 0).
inline f32x16 exp16(f32x16 x) {
  x = x < splat(-87.0f) ? splat(-87.0f) : x;
  x = x > splat(88.0f) ? splat(88.0f) : x;
  const f32x16 shifter = splat(12582912.0f);  // 1.5 * 2^23: adding it rounds to an integer
  const f32x16 n = (x * 1.44269504088896341f + shifter) - shifter;
  f32x16 r = x - n * 0.693359375f;  // exact: 0.693359375 has 9 significant bits
  r = r - n * -2.12194440e-4f;
  f32x16 p = splat(1.9875691500e-4f);
  p = p * r + 1.3981999507e-3f;
  p = p * r + 8.3334519073e-3f;
  p = p * r + 4.1665795894e-2f;
  p = p * r + 1.6666665459e-1f;
  p = p * r + 5.0000001201e-1f;
  const f32x16 e = p * r * r + r + 1.0f;
  const i32x16 bits = (__builtin_convertvector(n, i32x16) + 127) << 23;
  f32x16 two_n;
  std::memcpy(&two_n, &bits, sizeof(two_n));
  return e * two_n;
}

// tanh(x) per lane, as Cephes' tanhf: an odd polynomial below |x| = 0.625 (where
// 1 - 2 / (e^2x + 1) would cancel), else 1 - 2 / (e^2|x| + 1) with x's sign; a few ulp.
inline f32x16 tanh16(f32x16 x) {
  const f32x16 a = x < splat(0.0f) ? -x : x;
  const f32x16 z = x * x;
  f32x16 p = splat(-5.70498872745e-3f);
  p = p * z + 2.06390887954e-2f;
  p = p * z - 5.37397155531e-2f;
  p = p * z + 1.33314422036e-1f;
  p = p * z - 3.33332819422e-1f;
  const f32x16 small = p * z * x + x;
  const f32x16 t = 1.0f - 2.0f / (exp16(a * 2.0f) + 1.0f);
  const f32x16 large = x < splat(0.0f) ? -t : t;
  return a > splat(0.625f) ? large : small;
}

// gelu_tanh(x) = 0.5 x (1 + tanh(u)) = x / (1 + e^(-2u)), u = sqrt(2/pi) (x + 0.044715 x^3):
// the same function without tanh's cancellation near -1, so it stays accurate in relative
// terms where the value is tiny (large negative x).
inline f32x16 gelu16(f32x16 x) {
  const f32x16 u = (x + 0.044715f * x * x * x) * 0.7978845608028654f;
  return x / (1.0f + exp16(u * -2.0f));
}

// Applies f (16 lanes in, 16 out) to [b, e): full vectors, then the tail through a
// zero-padded buffer, so every element goes through the same arithmetic.
template <class F>
void map16(int64_t b, int64_t e, F f) {
  int64_t i = b;
  for (; i + kLanes <= e; i += kLanes) f(i, kLanes);
  if (i < e) f(i, e - i);
}
inline f32x16 load_part(const float* p, int64_t count) {
  if (count == kLanes) return load_f32(p);
  float buf[kLanes] = {};
  std::memcpy(buf, p, static_cast<size_t>(count) * sizeof(float));
  return load_f32(buf);
}
inline void store_part(float* p, f32x16 v, int64_t count) {
  std::memcpy(p, &v, static_cast<size_t>(count) * sizeof(float));
}

// The sum of v's lanes: halves, then quarters, then (c0 + c2) + (c1 + c3). With AVX-512
// the same tree by register shuffles (_mm512_reduce_add_ps adds in this order): the
// memcpy version made GCC keep every accumulator that reaches an hsum on the stack, so
// loops such as dot_keys' loaded and stored their sums on every step.
inline float hsum(f32x16 v) {
#if defined(__AVX512F__)
  return _mm512_reduce_add_ps(static_cast<__m512>(v));
#else
  typedef float f32x8 __attribute__((vector_size(32)));
  typedef float f32x4 __attribute__((vector_size(16)));
  f32x8 a, b;
  std::memcpy(&a, &v, sizeof(a));
  std::memcpy(&b, reinterpret_cast<const char*>(&v) + sizeof(a), sizeof(b));
  a += b;
  f32x4 c, d;
  std::memcpy(&c, &a, sizeof(c));
  std::memcpy(&d, reinterpret_cast<const char*>(&a) + sizeof(c), sizeof(d));
  c += d;
  return (c[0] + c[2]) + (c[1] + c[3]);
#endif
}

// Weight element types: Elem is the stored type; load16 converts 16 elements to float.
template <DType D>
struct Weight;
template <>
struct Weight<DType::kF32> {
  using Elem = float;
  static f32x16 load16(const float* p) { return load_f32(p); }
  static float load1(const float* p) { return *p; }
};
template <>
struct Weight<DType::kBF16> {
  using Elem = uint16_t;
  static f32x16 load16(const uint16_t* p) {
#if defined(__AVX512F__)
    // (maskz forms: the unmasked intrinsics trip GCC 12's -Wmaybe-uninitialized.)
    const __m256i h = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(p));
    return reinterpret_cast<f32x16>(reinterpret_cast<u32x16>(_mm512_maskz_cvtepu16_epi32(0xffff, h))
                                    << 16);
#else
    u16x16 h;
    std::memcpy(&h, p, sizeof(h));
    return reinterpret_cast<f32x16>(__builtin_convertvector(h, u32x16) << 16);
#endif
  }
  static float load1(const uint16_t* p) { return bf16_to_f32(*p); }
};
template <>
struct Weight<DType::kF16> {
  using Elem = uint16_t;
  static f32x16 load16(const uint16_t* p) {
#if defined(__AVX512F__)
    return _mm512_maskz_cvtph_ps(0xffff, _mm256_loadu_si256(reinterpret_cast<const __m256i*>(p)));
#elif defined(__F16C__)
    const __m256 lo = _mm256_cvtph_ps(_mm_loadu_si128(reinterpret_cast<const __m128i*>(p)));
    const __m256 hi = _mm256_cvtph_ps(_mm_loadu_si128(reinterpret_cast<const __m128i*>(p + 8)));
    f32x16 v;
    std::memcpy(&v, &lo, sizeof(lo));
    std::memcpy(reinterpret_cast<char*>(&v) + sizeof(lo), &hi, sizeof(hi));
    return v;
#else
    f32x16 v;
    for (int l = 0; l < kLanes; ++l) v[l] = f16_to_f32(p[l]);
    return v;
#endif
  }
  static float load1(const uint16_t* p) { return f16_to_f32(*p); }
};

// ---------------------------------------------------------------------------------------
// Matmul, small m (decode), converting W on the fly; memory-bound for m = 1. Two loop
// orders, chosen per type by measurement (kernels_bench's decode_stream, 2 threads, Zen 4):
// 16-bit weights stream fastest one row at a time, each thread reading its rows front to
// back as one stream (bf16: 50-52 GB/s against 38-42 for the 4-row tile); float32 weights
// fastest through the 4-row tile (46 GB/s against 34-39 one row at a time).

// Tile order: dot products of MR rows of x with 4 rows of W; parallel over blocks of W rows.

// x: [mr, k]; w: 4 row pointers of k elements; out[i][r] = x_i . w_r. next: the 4 rows
// this thread reads after these (or null), prefetched at the same offsets into L2: rows
// of 4 KiB end at page boundaries, where the hardware prefetchers stop.
template <DType D, int MR>
void dot_tile(const float* x, int64_t k, const typename Weight<D>::Elem* const* w, float out[][4],
              const typename Weight<D>::Elem* const* next) {
  using Wt = Weight<D>;
  constexpr int64_t kLineElems = 64 / sizeof(typename Wt::Elem);
  f32x16 acc[MR][4] = {};
  int64_t p = 0;
  for (; p + kLanes <= k; p += kLanes) {
    if (next != nullptr && p % kLineElems == 0) {
      for (int r = 0; r < 4; ++r) __builtin_prefetch(next[r] + p, 0, 2);
    }
    f32x16 xv[MR];
    for (int i = 0; i < MR; ++i) xv[i] = load_f32(x + i * k + p);
    for (int r = 0; r < 4; ++r) {
      const f32x16 wv = Wt::load16(w[r] + p);
      for (int i = 0; i < MR; ++i) acc[i][r] += xv[i] * wv;
    }
  }
  for (int i = 0; i < MR; ++i) {
    for (int r = 0; r < 4; ++r) {
      float tail = 0.0f;
      for (int64_t q = p; q < k; ++q) tail += x[i * k + q] * Wt::load1(w[r] + q);
      out[i][r] = hsum(acc[i][r]) + tail;
    }
  }
}

// x: [m, k], w: [n, k], bias: [n] or null, y: [m, n]; for small m.
template <DType D>
void matmul_small_m_tiles(const float* x, int64_t m, const MatrixView& w, const float* bias,
                          float* y) {
  using Elem = typename Weight<D>::Elem;
  const int64_t n = w.rows, k = w.cols;
  const auto* wd = static_cast<const Elem*>(w.data);
  const int64_t blocks = (n + 3) / 4;
  const int64_t grain = std::max<int64_t>(1, 8192 / std::max<int64_t>(1, k * m));
  parallel_for(blocks, grain, [&](int64_t b0, int64_t b1) {
    for (int64_t b = b0; b < b1; ++b) {
      const int64_t r0 = b * 4, nr = std::min<int64_t>(4, n - r0);
      const Elem* rows[4];
      const Elem* next_rows[4];
      // Rows past n repeat the last row; their results are dropped.
      for (int r = 0; r < 4; ++r) rows[r] = wd + (r0 + std::min<int64_t>(r, nr - 1)) * k;
      const bool has_next = b + 1 < b1;
      for (int r = 0; r < 4 && has_next; ++r)
        next_rows[r] = wd + std::min<int64_t>(r0 + 4 + r, n - 1) * k;
      const Elem* const* next = has_next ? next_rows : nullptr;
      for (int64_t i0 = 0; i0 < m; i0 += 4) {
        float out[4][4];
        const float* xi = x + i0 * k;
        const Elem* const* pf = i0 == 0 ? next : nullptr;  // once per block of rows
        switch (std::min<int64_t>(4, m - i0)) {
          case 1: dot_tile<D, 1>(xi, k, rows, out, pf); break;
          case 2: dot_tile<D, 2>(xi, k, rows, out, pf); break;
          case 3: dot_tile<D, 3>(xi, k, rows, out, pf); break;
          default: dot_tile<D, 4>(xi, k, rows, out, pf); break;
        }
        for (int64_t i = 0; i < std::min<int64_t>(4, m - i0); ++i) {
          for (int64_t r = 0; r < nr; ++r) {
            y[(i0 + i) * n + r0 + r] = out[i][r] + (bias != nullptr ? bias[r0 + r] : 0.0f);
          }
        }
      }
    }
  });
}

// Row order: dot products of up to 4 rows of x with one row of W; parallel over ranges of
// W rows. Four accumulators per x row hide the FMA latency; the row kRowPrefetch bytes
// ahead is fetched into L2 meanwhile, a line per line read (measured: 4 KiB beats 0, 1 and
// 8 KiB).
constexpr int64_t kRowPrefetch = 4096;

// x: [MR, k]; w: one row of k elements; out[i] = x_i . w.
template <DType D, int MR>
void dot_row(const float* x, int64_t k, const typename Weight<D>::Elem* w, float* out) {
  using Wt = Weight<D>;
  constexpr int kU = 4;                                                     // vectors per step
  constexpr int kStepLines = kU * kLanes * sizeof(typename Wt::Elem) / 64;  // lines per step
  f32x16 acc[MR][kU] = {};
  int64_t p = 0;
  for (; p + kU * kLanes <= k; p += kU * kLanes) {
    const char* ahead = reinterpret_cast<const char*>(w + p) + kRowPrefetch;
    for (int l = 0; l < kStepLines; ++l) __builtin_prefetch(ahead + l * 64, 0, 2);
    for (int u = 0; u < kU; ++u) {
      const f32x16 wv = Wt::load16(w + p + u * kLanes);
      for (int i = 0; i < MR; ++i) acc[i][u] += load_f32(x + i * k + p + u * kLanes) * wv;
    }
  }
  for (; p + kLanes <= k; p += kLanes) {
    const f32x16 wv = Wt::load16(w + p);
    for (int i = 0; i < MR; ++i) acc[i][0] += load_f32(x + i * k + p) * wv;
  }
  for (int i = 0; i < MR; ++i) {
    float tail = 0.0f;
    for (int64_t q = p; q < k; ++q) tail += x[i * k + q] * Wt::load1(w + q);
    out[i] = hsum((acc[i][0] + acc[i][1]) + (acc[i][2] + acc[i][3])) + tail;
  }
}

// Row order's loop: parallel over ranges of W rows; each row r meets x in groups of up to 4
// rows, dot(r, i0, mr, out) filling out[0 .. mr) with x_{i0 + i} . w_r.
template <class Dot>
void for_rows_small_m(int64_t m, int64_t n, int64_t k, const float* bias, float* y, Dot dot) {
  const int64_t grain = std::max<int64_t>(4, 16384 / std::max<int64_t>(1, k * m));
  parallel_for(n, grain, [&](int64_t r0, int64_t r1) {
    for (int64_t r = r0; r < r1; ++r) {
      for (int64_t i0 = 0; i0 < m; i0 += 4) {
        const int mr = static_cast<int>(std::min<int64_t>(4, m - i0));
        float out[4];
        dot(r, i0, mr, out);
        for (int i = 0; i < mr; ++i) {
          y[(i0 + i) * n + r] = out[i] + (bias != nullptr ? bias[r] : 0.0f);
        }
      }
    }
  });
}

// x: [m, k], w: [n, k], bias: [n] or null, y: [m, n]; for small m.
template <DType D>
void matmul_small_m_rows(const float* x, int64_t m, const MatrixView& w, const float* bias,
                         float* y) {
  using Elem = typename Weight<D>::Elem;
  const int64_t k = w.cols;
  const auto* wd = static_cast<const Elem*>(w.data);
  for_rows_small_m(m, w.rows, k, bias, y, [&](int64_t r, int64_t i0, int mr, float* out) {
    const Elem* row = wd + r * k;
    const float* xi = x + i0 * k;
    switch (mr) {
      case 1: return dot_row<D, 1>(xi, k, row, out);
      case 2: return dot_row<D, 2>(xi, k, row, out);
      case 3: return dot_row<D, 3>(xi, k, row, out);
      default: return dot_row<D, 4>(xi, k, row, out);
    }
  });
}

#if defined(__AVX512BF16__)
// Elements of 2 bytes from p to the next 64-byte boundary (0 when p is on one, or when p
// is not even 2-byte aligned and no boundary can be reached in whole elements).
inline int64_t head_elements(const uint16_t* p) {
  const auto a = reinterpret_cast<uintptr_t>(p);
  if (a % 2 != 0) return 0;
  return static_cast<int64_t>((64 - a % 64) % 64 / 2);
}

// The low-precision modes' bf16 weights, row order: x rounded to bf16 once (nearest even,
// as for oneDNN's prefill products), then one vdpbf16ps per 32 weights with no conversion
// (a product of two bf16 values is exact in float32; the sums stay float32). At one vector
// instruction per line the stream nears a plain read (measured on Zen 4, 2 threads: ~59
// GB/s against ~48 converting to float), where software prefetches only slow it; on an
// Intel Emerald Rapids (family 6 model 0xcf, session 28) a prefetch 2 KiB ahead in each
// row read 17-20% faster (bench/decode_prefetch_ab bf16, PaliGemma's and PaliGemma 2's
// layers alternating in one process: 25.8 against 21.5 and 26.8 against 22.5 GB/s, median
// time ratios 0.83-0.85), so the rows take it where the quantized products do
// (decode_prefetch(), quant.h: everywhere but Zen 4).

// x: [MR, kp] bf16, rows kp apart (kp >= k, a multiple of 32); w[0 .. NW): NW rows of k
// bf16 elements, all at the same offset from a 64-byte line; out[4 * j + i] = x_i . w_j.
// The first h elements (up to the rows' first 64-byte boundary) go through masked loads,
// so that every full step reads whole lines: a load that straddles two lines costs a
// second access, and on a stream of them the read falls from ~58 to ~43 GB/s (checkpoint
// tensors are often not 64-byte aligned). x's buffer is offset the same way, so its loads
// are aligned too when rows are whole lines.
// With Prefetch (decode_prefetch(), quant.h), each row's lines 2 KiB on (into L1) and 6 KiB
// on (into L2) are fetched as a line is read (prefetch_decode_stream, quant.h).

template <int MR, int NW, bool Prefetch>
void dot_rows_bf16(const uint16_t* x, int64_t kp, int64_t k, const uint16_t* const* w, float* out) {
  __m512 acc[NW][MR][2];
  for (int j = 0; j < NW; ++j)
    for (int i = 0; i < MR; ++i) acc[j][i][0] = acc[j][i][1] = _mm512_setzero_ps();
  auto step = [&](int64_t p, int u, __mmask32 mask) {  // weights p .. p + 31 under mask
    if constexpr (Prefetch) {
      for (int j = 0; j < NW; ++j) prefetch_decode_stream(w[j] + p);
    }
    __m512bh wv[NW];
    for (int j = 0; j < NW; ++j) wv[j] = (__m512bh)_mm512_maskz_loadu_epi16(mask, w[j] + p);
    for (int i = 0; i < MR; ++i) {
      const __m512bh xv = (__m512bh)_mm512_maskz_loadu_epi16(mask, x + i * kp + p);
      for (int j = 0; j < NW; ++j) acc[j][i][u] = _mm512_dpbf16_ps(acc[j][i][u], xv, wv[j]);
    }
  };
  const int64_t h = std::min<int64_t>(k, head_elements(w[0]));
  if (h > 0) step(0, 1, first_n32(h));
  int64_t p = h;
  for (; p + 64 <= k; p += 64) {
    step(p, 0, ~__mmask32{0});
    step(p + 32, 1, ~__mmask32{0});
  }
  for (; p < k; p += 32) step(p, 0, first_n32(k - p));
  for (int j = 0; j < NW; ++j) {
    for (int i = 0; i < MR; ++i) {
      out[4 * j + i] = _mm512_reduce_add_ps(_mm512_add_ps(acc[j][i][0], acc[j][i][1]));
    }
  }
}

// dot_rows_bf16 for mr (1 to 4) rows of x, chosen at run time.
template <int NW, bool Prefetch>
void dot_rows_bf16_mr(int mr, const uint16_t* x, int64_t kp, int64_t k, const uint16_t* const* w,
                      float* out) {
  switch (mr) {
    case 1: return dot_rows_bf16<1, NW, Prefetch>(x, kp, k, w, out);
    case 2: return dot_rows_bf16<2, NW, Prefetch>(x, kp, k, w, out);
    case 3: return dot_rows_bf16<3, NW, Prefetch>(x, kp, k, w, out);
    default: return dot_rows_bf16<4, NW, Prefetch>(x, kp, k, w, out);
  }
}

// x: [m, k], w: [n, k] bf16 (low_precision), bias: [n] or null, y: [m, n]; for small m.
void matmul_small_m_bf16_products(const float* x, int64_t m, const MatrixView& w, const float* bias,
                                  float* y) {
  const int64_t n = w.rows, k = w.cols, kp = (k + 31) / 32 * 32;
  const auto* wd = static_cast<const uint16_t*>(w.data);
  // x rows start where W's first row does relative to a line: (xr + h) is 64-byte aligned
  // when (wd + h) is. (No padding to clear: loads past k are masked.)
  const int64_t h0 = head_elements(wd);
  thread_local std::vector<uint16_t> xb;
  if (xb.size() < static_cast<size_t>(m * kp + 64)) xb.resize(static_cast<size_t>(m * kp + 64));
  uint16_t* xr = xb.data() + head_elements(xb.data());  // 64-byte aligned
  xr += (32 - h0) % 32;
  for (int64_t i = 0; i < m; ++i) round_to_bf16(x + i * k, k, xr + i * kp);
  const bool prefetch = decode_prefetch();
  // (xr points into this thread's thread_local buffer, as the pool's threads must use.)
  // Rows ra and rb (rb < 0: ra alone) against x rows i0 .. i0 + mr: two rows in step when
  // they sit at the same offset from a line (always, when rows are whole lines).
  auto dot2 = [&](int64_t ra, int64_t rb, int64_t i0, int mr, float* out) {
    const uint16_t* rows[2] = {wd + ra * k, rb >= 0 ? wd + rb * k : nullptr};
    const uint16_t* xi = xr + i0 * kp;
    if (rb >= 0 && head_elements(rows[0]) == head_elements(rows[1])) {
      return (prefetch ? dot_rows_bf16_mr<2, true> : dot_rows_bf16_mr<2, false>)(mr, xi, kp, k,
                                                                                 rows, out);
    }
    for (int j = 0; j < (rb >= 0 ? 2 : 1); ++j) {
      (prefetch ? dot_rows_bf16_mr<1, true> : dot_rows_bf16_mr<1, false>)(mr, xi, kp, k, rows + j,
                                                                          out + 4 * j);
    }
  };
  for_row_pairs_small_m(m, n, k, bias, y, dot2);
}
#endif

template <DType D>
void matmul_small_m(const float* x, int64_t m, const MatrixView& w, const float* bias, float* y) {
#if defined(__AVX512BF16__)
  if (D == DType::kBF16 && w.low_precision) return matmul_small_m_bf16_products(x, m, w, bias, y);
#endif
  if constexpr (D == DType::kF32) {
    matmul_small_m_tiles<D>(x, m, w, bias, y);
  } else {
    matmul_small_m_rows<D>(x, m, w, bias, y);
  }
}

// ---------------------------------------------------------------------------------------
// Matmul, larger m (prefill), BLIS-style: W is packed, converted to float, one panel of
// kNR rows at a time, laid out [kc][kNR] for a block of kKC reduction columns; x is packed
// into tiles of kMR rows laid out [kc][kMR]. A kMR x kNR register tile of y accumulates
// outer products of broadcast x elements with panel rows. Each panel stays in L1 while all
// x tiles of the block stream past it from L2, so each W element is read once per call.

constexpr int kMR = 8;             // rows of x per register tile
constexpr int kNV = 2;             // vectors per panel row
constexpr int kNR = kNV * kLanes;  // rows of W per panel
constexpr int64_t kKC = 256;       // reduction block: a 32 KiB panel
constexpr int64_t kGroup = 16;     // panels sharing one packing of x

// Swaps the S-wide off-diagonal blocks of rows a and b: one stage of a 16 x 16 transpose.
template <int S, size_t... L>
inline void swap_blocks(f32x16& a, f32x16& b, std::index_sequence<L...>) {
  const f32x16 na = __builtin_shufflevector(a, b, ((L & S) ? kLanes + L - S : L)...);
  const f32x16 nb = __builtin_shufflevector(a, b, ((L & S) ? kLanes + L : L + S)...);
  a = na;
  b = nb;
}
template <int S>
inline void transpose_stage(f32x16* r) {
  for (int i = 0; i < kLanes; ++i) {
    if ((i & S) == 0) swap_blocks<S>(r[i], r[i + S], std::make_index_sequence<kLanes>());
  }
}
// r: 16 rows of 16, transposed in place (64 two-source shuffles).
inline void transpose16(f32x16* r) {
  transpose_stage<8>(r);
  transpose_stage<4>(r);
  transpose_stage<2>(r);
  transpose_stage<1>(r);
}

// Packs W[row0 : row0 + kNR, kb : kb + kc] (rows >= n as zeros) into dst: [kc][kNR], in
// 16 x 16 blocks converted and transposed in registers.
template <DType D>
void pack_panel(const MatrixView& w, int64_t row0, int64_t kb, int64_t kc, float* dst) {
  using Wt = Weight<D>;
  const auto* wd = static_cast<const typename Wt::Elem*>(w.data);
  const int64_t nrows = std::clamp<int64_t>(w.rows - row0, 0, kNR);
  for (int j0 = 0; j0 < kNR; j0 += kLanes) {
    const auto* src = wd + (row0 + j0) * w.cols + kb;  // row j0 + j: src + j * w.cols
    int64_t p = 0;
    for (; p + kLanes <= kc; p += kLanes) {
      f32x16 r[kLanes];
      for (int j = 0; j < kLanes; ++j) {
        r[j] = j0 + j < nrows ? Wt::load16(src + j * w.cols + p) : f32x16{};
      }
      transpose16(r);
      for (int l = 0; l < kLanes; ++l) store_f32(dst + (p + l) * kNR + j0, r[l]);
    }
    for (; p < kc; ++p) {
      for (int j = 0; j < kLanes; ++j) {
        dst[p * kNR + j0 + j] = j0 + j < nrows ? Wt::load1(src + j * w.cols + p) : 0.0f;
      }
    }
  }
}

// y[MR, ncols] (=|+=) x[MR, kc] panel^T. x: packed [kc][kMR] (rows < MR read); panel:
// [kc][kNR]; y rows ldy apart. first: overwrite y, else add to it. bias (ncols floats) or
// null: added.
template <int MR>
void micro_tile(const float* x, const float* panel, int64_t kc, float* y, int64_t ldy,
                int64_t ncols, bool first, const float* bias) {
  f32x16 acc[MR][kNV] = {};
  for (int64_t p = 0; p < kc; ++p) {
    f32x16 wv[kNV];
    for (int v = 0; v < kNV; ++v) wv[v] = load_f32(panel + p * kNR + v * kLanes);
    for (int i = 0; i < MR; ++i) {
      const float b = x[p * kMR + i];
      for (int v = 0; v < kNV; ++v) acc[i][v] += b * wv[v];
    }
  }
  for (int i = 0; i < MR; ++i) {
    float* yi = y + i * ldy;
    if (ncols == kNR) {
      for (int v = 0; v < kNV; ++v) {
        f32x16 a = acc[i][v];
        if (!first) a += load_f32(yi + v * kLanes);
        if (bias != nullptr) a += load_f32(bias + v * kLanes);
        store_f32(yi + v * kLanes, a);
      }
    } else {
      float tile[kNR];
      for (int v = 0; v < kNV; ++v) store_f32(tile + v * kLanes, acc[i][v]);
      for (int64_t c = 0; c < ncols; ++c) {
        float sum = tile[c];
        if (!first) sum += yi[c];
        if (bias != nullptr) sum += bias[c];
        yi[c] = sum;
      }
    }
  }
}

using MicroFn = void (*)(const float*, const float*, int64_t, float*, int64_t, int64_t, bool,
                         const float*);
template <size_t... I>
constexpr std::array<MicroFn, kMR + 1> micro_table(std::index_sequence<I...>) {
  return {nullptr, micro_tile<I + 1>...};
}
constexpr auto kMicro = micro_table(std::make_index_sequence<kMR>());

// Packs x[i0 : i0 + mr, kb : kb + kc] into dst: [kc][kMR] (rows past mr left as they are).
void pack_x(const float* x, int64_t k, int64_t mr, int64_t kc, float* dst) {
  for (int64_t i = 0; i < mr; ++i) {
    for (int64_t p = 0; p < kc; ++p) dst[p * kMR + i] = x[i * k + p];
  }
}

// Rows [m0, m1) of y for panels [p0, p1), i.e. columns [p0 * kNR, p1 * kNR) (clipped).
// x: [m, k], w: [n, k], bias: [n] or null, y: [m, n]; k > 0.
template <DType D>
void packed_block(const float* x, int64_t m0, int64_t m1, const MatrixView& w, const float* bias,
                  float* y, int64_t p0, int64_t p1) {
  const int64_t n = w.rows, k = w.cols, tiles = (m1 - m0 + kMR - 1) / kMR;
  thread_local std::vector<float> wbuf, xbuf;
  wbuf.resize(static_cast<size_t>(kKC * kNR));
  xbuf.resize(static_cast<size_t>(tiles * kKC * kMR));
  for (int64_t g0 = p0; g0 < p1; g0 += kGroup) {
    const int64_t g1 = std::min(p1, g0 + kGroup);
    for (int64_t kb = 0; kb < k; kb += kKC) {
      const int64_t kc = std::min(kKC, k - kb);
      for (int64_t t = 0; t < tiles; ++t) {
        const int64_t i0 = m0 + t * kMR;
        pack_x(x + i0 * k + kb, k, std::min<int64_t>(kMR, m1 - i0), kc, &xbuf[t * kKC * kMR]);
      }
      const bool first = kb == 0, last = kb + kc == k;
      for (int64_t g = g0; g < g1; ++g) {
        const int64_t col = g * kNR, ncols = std::min<int64_t>(kNR, n - col);
        pack_panel<D>(w, col, kb, kc, wbuf.data());
        const float* b = last && bias != nullptr ? bias + col : nullptr;
        for (int64_t t = 0; t < tiles; ++t) {
          const int64_t i0 = m0 + t * kMR;
          kMicro[std::min<int64_t>(kMR, m1 - i0)](&xbuf[t * kKC * kMR], wbuf.data(), kc,
                                                  y + i0 * n + col, n, ncols, first, b);
        }
      }
    }
  }
}

// x: [m, k], w: [n, k], bias: [n] or null, y: [m, n]; k > 0. Parallel over panels, and
// over row ranges of x too when there are few panels for the threads.
template <DType D>
void matmul_packed(const float* x, int64_t m, const MatrixView& w, const float* bias, float* y) {
  const int64_t panels = (w.rows + kNR - 1) / kNR;
  int64_t parts = 1;  // row ranges of x, each at least 4 tiles
  while (panels * parts < 4 * num_threads() && m / (2 * parts) >= 4 * kMR) parts *= 2;
  const int64_t rows_per_part = (m + parts - 1) / parts;
  parallel_for(parts * panels, 1, [&](int64_t b, int64_t e) {
    while (b < e) {  // the items of one row range at a time
      const int64_t part = b / panels, p0 = b % panels, p1 = std::min(panels, p0 + (e - b));
      const int64_t m0 = part * rows_per_part, m1 = std::min(m, m0 + rows_per_part);
      if (m0 < m1) packed_block<D>(x, m0, m1, w, bias, y, p0, p1);
      b += p1 - p0;
    }
  });
}

// Up to this many rows of x, converting W on the fly beats packing it (measured on a
// Zen 5 core: the two paths cross between 8 and 16 rows).
constexpr int64_t kSmallM = 12;

template <DType D>
void matmul_typed(const float* x, int64_t m, const MatrixView& w, const float* bias, float* y) {
  if (m <= kSmallM) {
    matmul_small_m<D>(x, m, w, bias, y);
  } else {
    matmul_packed<D>(x, m, w, bias, y);
  }
}

// Rows of x from which oneDNN runs the product.
constexpr int64_t kOneDnnMinRows = 16;

// Whether the prefill products may take the AMX tiles (amx_gemm.h) for w: quantized
// weights, or bf16 low-precision views (the tiles check the formats themselves, and run
// only where amx_products_run()). matmul, matmul_many, matmul_gelu_mul and mlp all ask it,
// so that mlp's hand-off runs exactly where the separate steps would take the tiles.
bool tiles_take(const MatrixView& w) {
  return w.quantized() || (w.dtype == DType::kBF16 && w.low_precision);
}

// Whether the w8a8 products (amx_w8a8.h: row-scaled q8, x quantized per row, on int8
// tiles, else on VNNI: quant_gemm.h) run these matrices: they come before every other
// product of them at prefill sizes, and the fused gating and MLP then run as their steps.
bool w8a8_take(const MatmulOutput* out, int count) {
  return count > 0 && out[0].w.row_scales && (w8a8_products_run() || w8a8_vnni_run()) &&
         w8a8_formats(out, count, out[0].w.cols);
}

// The w8a8 products of x [m, k] on AMX where they run, else on VNNI.
bool gemm_w8a8(const float* x, int64_t m, int64_t k, const MatmulOutput* out, int count) {
  return gemm_w8a8_amx(x, m, k, out, count) || gemm_w8a8_vnni(x, m, k, out, count);
}

// x: [m, k], w: [n, k] (F32, BF16 or F16), bias: [n] or null, y: [m, n].
void matmul(const float* x, int64_t m, const MatrixView& w, const float* bias, float* y) {
  const int64_t n = w.rows, k = w.cols;
  if (m <= 0 || n <= 0) return;
  if (k == 0) {
    for (int64_t i = 0; i < m; ++i) {
      for (int64_t j = 0; j < n; ++j) y[i * n + j] = bias != nullptr ? bias[j] : 0.0f;
    }
    return;
  }
  // Prefill and vision shapes: oneDNN's GEMM for float32 (exact), a bf16 product where allowed.
  if (m >= kOneDnnMinRows) {
    if (w.dtype == DType::kF32 &&
        onednn_matmul_f32(x, m, static_cast<const float*>(w.data), n, k, bias, y))
      return;
    // Quantized weights (dequantized to bf16) and bf16 weights in the low-precision modes
    // on AMX tiles, where they run; else the latter on the own vdpbf16ps product, else
    // oneDNN's.
    const auto* wb = static_cast<const uint16_t*>(w.data);
    const MatmulOutput out{w, bias, y};
    if (w8a8_take(&out, 1) && gemm_w8a8(x, m, k, &out, 1)) return;
    if (tiles_take(w) && gemm_bf16_amx(x, m, k, &out, 1)) return;
    if (w.dtype == DType::kBF16 && w.low_precision &&
        (gemm_bf16_avx512(x, m, k, &out, 1) || onednn_matmul_bf16(x, m, wb, n, k, bias, y)))
      return;
  }
  switch (w.dtype) {
    case DType::kF32: return matmul_typed<DType::kF32>(x, m, w, bias, y);
    case DType::kBF16: return matmul_typed<DType::kBF16>(x, m, w, bias, y);
    case DType::kF16: return matmul_typed<DType::kF16>(x, m, w, bias, y);
    case DType::kI8:
    case DType::kU8: return matmul_quantized(x, m, w, bias, y);  // quant.cc
    default: std::fill(y, y + m * n, std::numeric_limits<float>::quiet_NaN());
  }
}

// Products sharing x: one packing of x where the product packs it (AMX tiles: bf16 weights
// in the low-precision modes and quantized weights; else bf16 weights in the low-precision
// modes, quantized weights on VNNI), else one product after the other. (Each product
// checks that every matrix has its format and x's k columns; the bf16 ones run only where
// matmul would run them, on low-precision views.)
void matmul_many(const float* x, int64_t m, const MatmulOutput* out, int count) {
  if (count <= 0) return;
  if (m >= kOneDnnMinRows) {
    const bool low_precision =
        std::all_of(out, out + count, [](const MatmulOutput& o) { return o.w.low_precision; });
    const int64_t k = out[0].w.cols;
    if (w8a8_take(out, count) && gemm_w8a8(x, m, k, out, count)) return;
    if (std::all_of(out, out + count, [](const MatmulOutput& o) { return tiles_take(o.w); }) &&
        gemm_bf16_amx(x, m, k, out, count))
      return;
    if (low_precision && gemm_bf16_avx512(x, m, k, out, count)) return;
    if (gemm_quantized_vnni(x, m, out[0].w.cols, out, count)) return;
  }
  for (int i = 0; i < count; ++i) matmul(x, m, out[i].w, out[i].bias, out[i].y);
}

// ---------------------------------------------------------------------------------------
// Row-wise norms and elementwise ops.

// Rows per parallel chunk so that a chunk holds about `elems` elements.
int64_t row_grain(int64_t dim, int64_t elems) {
  return std::max<int64_t>(1, elems / std::max<int64_t>(1, dim));
}

// x, y: [rows, dim] (may alias); gamma, beta: [dim].
void layer_norm(const float* x, int64_t rows, int64_t dim, const float* gamma, const float* beta,
                float eps, float* y) {
  parallel_for(rows, row_grain(dim, 16384), [&](int64_t r0, int64_t r1) {
    for (int64_t r = r0; r < r1; ++r) {
      const float* xr = x + r * dim;
      float* yr = y + r * dim;
      float sum = 0.0f;
#pragma omp simd reduction(+ : sum)
      for (int64_t i = 0; i < dim; ++i) sum += xr[i];
      const float mean = sum / static_cast<float>(dim);
      float sq = 0.0f;
#pragma omp simd reduction(+ : sq)
      for (int64_t i = 0; i < dim; ++i) sq += (xr[i] - mean) * (xr[i] - mean);
      const float inv = 1.0f / std::sqrt(sq / static_cast<float>(dim) + eps);
      for (int64_t i = 0; i < dim; ++i) yr[i] = (xr[i] - mean) * inv * gamma[i] + beta[i];
    }
  });
}

// x, y: [rows, dim] (may alias); weight: [dim].
void rms_norm(const float* x, int64_t rows, int64_t dim, const float* weight, float eps, float* y) {
  parallel_for(rows, row_grain(dim, 16384), [&](int64_t r0, int64_t r1) {
    for (int64_t r = r0; r < r1; ++r) {
      const float* xr = x + r * dim;
      float* yr = y + r * dim;
      float sq = 0.0f;
#pragma omp simd reduction(+ : sq)
      for (int64_t i = 0; i < dim; ++i) sq += xr[i] * xr[i];
      const float inv = 1.0f / std::sqrt(sq / static_cast<float>(dim) + eps);
      for (int64_t i = 0; i < dim; ++i) yr[i] = xr[i] * inv * (1.0f + weight[i]);
    }
  });
}

constexpr int64_t kTanhGrain = 4096;     // elements per chunk for ops calling std::tanh
constexpr int64_t kGeluGrain = 16384;    // elements per chunk for the vector GELU
constexpr int64_t kStreamGrain = 65536;  // elements per chunk for memory-bound ops

// x, y: [n] (may alias).
void gelu_tanh(const float* x, float* y, int64_t n) {
  parallel_for(n, kGeluGrain, [&](int64_t b, int64_t e) {
    map16(b, e, [&](int64_t i, int64_t c) { store_part(y + i, gelu16(load_part(x + i, c)), c); });
  });
}

// gate, up, y: [n]; y may alias either input.
void gelu_tanh_mul(const float* gate, const float* up, float* y, int64_t n) {
  parallel_for(n, kGeluGrain,
               [&](int64_t b, int64_t e) { gelu_tanh_mul_span(gate + b, up + b, y + b, e - b); });
}

// The MLP's gating: fused into the AMX tiles' product (amx_w8a8.h for row-scaled q8, or
// its VNNI twin;
// amx_gemm.h: quantized weights or low-precision bf16 views), the bf16 product (low-precision
// views) or the quantized one on VNNI (bf16_gemm.h, quant_gemm.h), else the two products (sharing
// x's packing where they pack it), up's into the calling thread's buffer, and then gelu_tanh_mul.
void matmul_gelu_mul(const float* x, int64_t m, const MatrixView& gate, const MatrixView& up,
                     float* y) {
  const MatmulOutput pair[2] = {{gate, nullptr, nullptr}, {up, nullptr, nullptr}};
  if (m >= kOneDnnMinRows && w8a8_take(pair, 2)) {
    if (gemm_w8a8_amx_gelu_mul(x, m, gate, up, y) || gemm_w8a8_vnni_gelu_mul(x, m, gate, up, y))
      return;
  } else if (m >= kOneDnnMinRows) {
    if (tiles_take(gate) && tiles_take(up) && gemm_bf16_amx_gelu_mul(x, m, gate, up, y)) return;
    if (gate.low_precision && up.low_precision && gemm_bf16_avx512_gelu_mul(x, m, gate, up, y))
      return;
    if (gemm_quantized_vnni_gelu_mul(x, m, gate, up, y)) return;
  }
  thread_local std::vector<float> up_y;
  if (up_y.size() < static_cast<size_t>(m * up.rows)) up_y.resize(static_cast<size_t>(m * up.rows));
  const MatmulOutput out[2] = {{gate, nullptr, y}, {up, nullptr, up_y.data()}};
  matmul_many(x, m, out, 2);
  gelu_tanh_mul(y, up_y.data(), y, m * gate.rows);
}

// The Gemma MLP: with bf16 low-precision views at prefill sizes, the gating hands its
// outputs to the down projection already packed (bf16_gemm.h); else matmul_gelu_mul into
// hidden and the down projection from it.
void mlp(const float* x, int64_t m, const MatrixView& gate, const MatrixView& up,
         const MatrixView& down, float* hidden, float* y) {
  // On AMX the tiles' own hand-off, where both steps would take the tiles (as
  // matmul_gelu_mul and matmul choose them); the AVX-512 fusion is not used there.
  const MatmulOutput steps[3] = {
      {gate, nullptr, nullptr}, {up, nullptr, nullptr}, {down, nullptr, nullptr}};
  if (m >= kOneDnnMinRows && (w8a8_take(steps, 2) || w8a8_take(steps + 2, 1))) {
    // (w8a8: the gating's products and the down projection's, each on the int8 tiles or
    // VNNI.)
  } else if (m >= kOneDnnMinRows && amx_products_run()) {
    if (tiles_take(gate) && tiles_take(up) && tiles_take(down) &&
        gemm_bf16_amx_mlp(x, m, gate, up, down, y))
      return;
  } else if (m >= kOneDnnMinRows && gate.low_precision && up.low_precision && down.low_precision &&
             gemm_bf16_avx512_mlp(x, m, gate, up, down, hidden, y)) {
    return;
  }
  matmul_gelu_mul(x, m, gate, up, hidden);
  matmul(hidden, m, down, nullptr, y);
}

// x: rows of `stride` floats holding num_heads heads of head_dim; positions: [rows].
void rope(float* x, int64_t rows, int64_t stride, int64_t num_heads, int64_t head_dim,
          const int64_t* positions, float theta) {
  const int64_t half = head_dim / 2;
  std::vector<float> inv_freq(static_cast<size_t>(half));
  for (int64_t i = 0; i < half; ++i) {
    const float exponent = static_cast<float>(2 * i) / static_cast<float>(head_dim);
    inv_freq[i] = 1.0f / std::pow(theta, exponent);
  }
  parallel_for(rows, row_grain(num_heads * head_dim, 8192), [&](int64_t r0, int64_t r1) {
    std::vector<float> cs(static_cast<size_t>(2 * half));
    float* cosv = cs.data();
    float* sinv = cs.data() + half;
    for (int64_t r = r0; r < r1; ++r) {
      const float pos = static_cast<float>(positions[r]);
      for (int64_t i = 0; i < half; ++i) {
        const float angle = pos * inv_freq[i];
        cosv[i] = std::cos(angle);
        sinv[i] = std::sin(angle);
      }
      for (int64_t h = 0; h < num_heads; ++h) {
        float* v = x + r * stride + h * head_dim;
        for (int64_t i = 0; i < half; ++i) {
          const float a = v[i], b = v[i + half];
          v[i] = a * cosv[i] - b * sinv[i];
          v[i + half] = b * cosv[i] + a * sinv[i];
        }
      }
    }
  });
}

// x: [n], in place.
void softcap(float* x, int64_t n, float cap) {
  parallel_for(n, kTanhGrain, [&](int64_t b, int64_t e) {
    map16(b, e, [&](int64_t i, int64_t c) {
      store_part(x + i, tanh16(load_part(x + i, c) / cap) * cap, c);
    });
  });
}

// y, x: [n].
void add(float* y, const float* x, int64_t n) {
  parallel_for(n, kStreamGrain, [&](int64_t b, int64_t e) {
    for (int64_t i = b; i < e; ++i) y[i] += x[i];
  });
}

// x: [n].
void scale(float* x, int64_t n, float s) {
  parallel_for(n, kStreamGrain, [&](int64_t b, int64_t e) {
    for (int64_t i = b; i < e; ++i) x[i] *= s;
  });
}

// One thread (a vocabulary's 1 MiB is read in ~20 us, less than waking the pool): blocks
// of 64 are compared with the largest value so far, and only a block holding a larger one
// is walked value by value. (The reference's loop re-reads x[best] after every compare,
// a chain of dependent loads: ~1.2 ms over 257152 logits, 3% of a q4 token.)
int64_t argmax(const float* x, int64_t n) {
  int64_t best = 0, i = 1;
  float best_value = x[0];
  auto walk = [&](int64_t end) {
    for (; i < end; ++i) {
      if (x[i] > best_value) best_value = x[i], best = i;
    }
  };
#if defined(__AVX512F__)
  constexpr int64_t kBlock = 64;
  for (; i + kBlock <= n;) {
    const __m512 b = _mm512_set1_ps(best_value);  // ordered: a NaN on either side is not larger
    const __mmask16 larger =
        static_cast<__mmask16>(_mm512_cmp_ps_mask(_mm512_loadu_ps(x + i), b, _CMP_GT_OQ) |
                               _mm512_cmp_ps_mask(_mm512_loadu_ps(x + i + 16), b, _CMP_GT_OQ) |
                               _mm512_cmp_ps_mask(_mm512_loadu_ps(x + i + 32), b, _CMP_GT_OQ) |
                               _mm512_cmp_ps_mask(_mm512_loadu_ps(x + i + 48), b, _CMP_GT_OQ));
    if (larger != 0) {
      walk(i + kBlock);
    } else {
      i += kBlock;
    }
  }
#endif
  walk(n);
  return best;
}

// ---------------------------------------------------------------------------------------
// Attention, few queries (decode). Keys and values are float32 or (a bf16 KV cache) bf16,
// read through load_kv / kv_value as the float32 they represent.

inline f32x16 load_kv(const float* p) { return load_f32(p); }
inline f32x16 load_kv(const uint16_t* p) {  // 16 bf16: each the high half of its float32
#if defined(__AVX512F__)
  return static_cast<f32x16>(_mm512_castsi512_ps(_mm512_slli_epi32(
      _mm512_cvtepu16_epi32(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(p))), 16)));
#else
  typedef uint16_t u16x16 __attribute__((vector_size(32)));
  typedef uint32_t u32x16 __attribute__((vector_size(64)));
  u16x16 h;
  std::memcpy(&h, p, sizeof(h));
  return std::bit_cast<f32x16>(__builtin_convertvector(h, u32x16) << 16);
#endif
}
inline float kv_value(float x) { return x; }
inline float kv_value(uint16_t x) { return bf16_to_f32(x); }

// Scores of one query row against keys k_0..k_{n-1} (n <= 4, `stride` floats apart):
// s[i] = q . k_i, four keys at a time so that four accumulators hide the FMA latency a
// single running sum would wait on.
template <class KV>
inline void dot_keys(const float* qh, const KV* k, int64_t stride, int64_t n, int64_t dd,
                     float* s) {
  const KV* k0 = k;
  const KV* k1 = n > 1 ? k + stride : k;
  const KV* k2 = n > 2 ? k + 2 * stride : k;
  const KV* k3 = n > 3 ? k + 3 * stride : k;
  f32x16 a0 = {}, a1 = {}, a2 = {}, a3 = {};
  int64_t d = 0;
  for (; d + kLanes <= dd; d += kLanes) {
    const f32x16 qv = load_f32(qh + d);
    a0 += qv * load_kv(k0 + d), a1 += qv * load_kv(k1 + d);
    a2 += qv * load_kv(k2 + d), a3 += qv * load_kv(k3 + d);
  }
  float t[4] = {hsum(a0), hsum(a1), hsum(a2), hsum(a3)};
  const KV* rows[4] = {k0, k1, k2, k3};
  for (int64_t i = 0; i < n; ++i) {
    for (int64_t e = d; e < dd; ++e) t[i] += qh[e] * kv_value(rows[i][e]);
    s[i] = t[i];
  }
}

// o[0:16 NV] = sum_j p[j] v_j (add: o += instead) over n value rows `stride` floats apart,
// the output held in NV registers (no loads or stores of o per key).
template <int NV, class KV>
void weighted_rows(const float* p, const KV* v, int64_t stride, int64_t n, bool add, float* o) {
  f32x16 acc[NV] = {};
  if (add) {
#pragma GCC unroll 16
    for (int c = 0; c < NV; ++c) acc[c] = load_f32(o + c * kLanes);
  }
  for (int64_t j = 0; j < n; ++j) {
    const f32x16 pj = splat(p[j]);
    const KV* vj = v + j * stride;
#pragma GCC unroll 16
    for (int c = 0; c < NV; ++c) acc[c] += pj * load_kv(vj + c * kLanes);
  }
#pragma GCC unroll 16
  for (int c = 0; c < NV; ++c) store_f32(o + c * kLanes, acc[c]);
}

// The same for any head dimension.
template <class KV>
void weighted_rows_any(const float* p, const KV* v, int64_t stride, int64_t n, int64_t dd, bool add,
                       float* o) {
  switch (dd) {
    case 16: return weighted_rows<1>(p, v, stride, n, add, o);
    case 32: return weighted_rows<2>(p, v, stride, n, add, o);
    case 64: return weighted_rows<4>(p, v, stride, n, add, o);
    case 128: return weighted_rows<8>(p, v, stride, n, add, o);
    case 256: return weighted_rows<16>(p, v, stride, n, add, o);
    default: break;
  }
  if (!add) std::fill(o, o + dd, 0.0f);
  for (int64_t j = 0; j < n; ++j) {
    const float pj = p[j];
    const KV* vj = v + j * stride;
    for (int64_t d = 0; d < dd; ++d) o[d] += pj * kv_value(vj[d]);
  }
}

constexpr int64_t kKeyStep = 16;
constexpr float kInf = std::numeric_limits<float>::infinity();

// Attention, few queries (decode): work items are (query, chunk of keys). An item walks
// its chunk's key rows front to back, kKeyStep rows (all kv heads) at a time, and every
// query head takes its part of those rows while they are in L1; then the same for the
// values. So the cache is read once, as one sequential stream per item (one head at a
// time over the whole cache read it once per query head: at 896 px, 4107 keys, that was
// 15% of a decode step; items of (query, kv head, chunk) read each row in kv-head pieces
// 4 KiB apart, which the hardware prefetcher follows poorly). Chunks also spread a
// single query's work over the threads. Each item leaves, per head, its chunk's max
// score, sum of exponentials and unnormalized output; a second pass merges the chunks of
// each (query, head).
// q: [T, q_stride], k, v: [S, kv_stride], out: [T, out_stride]. A query that sees no key
// gets zeros. Visible keys form one interval [lo, hi) per query.
template <class KV>
void attention_rows(const AttentionParams& p, const float* q, const KV* k, const KV* v,
                    float* out) {
  const int64_t T = p.num_queries, hq = p.num_heads, hkv = p.num_kv_heads, dd = p.head_dim;
  const int64_t s_len = p.num_keys, group = hq / hkv;
  auto visible = [&](int64_t t, int64_t& lo, int64_t& hi) {
    const int64_t i = p.query_offset + t;
    lo = 0, hi = s_len;
    if (p.causal) hi = std::min(s_len, std::max(p.prefix_len, i + 1));
    if (p.sliding_window > 0) lo = std::max<int64_t>(0, i - p.sliding_window + 1);
  };
  // Chunks: at most 64 Ki / dd keys (each head's scores of a chunk, hq x chunk floats, stay
  // in L1/L2); at least two per thread when the cache is long enough.
  const int64_t cap = std::clamp<int64_t>((int64_t{64} << 10) / std::max<int64_t>(dd, 1), 64, 1024);
  const int64_t chunk =
      std::min(cap, std::max<int64_t>(32, (s_len + 2 * num_threads() - 1) / (2 * num_threads())));
  const int64_t chunks = std::max<int64_t>(1, (s_len + chunk - 1) / chunk);
  // part[(t * hq + h) * chunks + c]: max score, sum of exp(score - max), output [dd].
  const int64_t rec = dd + 2;
  // Buffers kept per thread across calls (a decode step makes one call per layer); every
  // field of part is written before it is read. (The pool's threads use this thread's part.)
  thread_local std::vector<float> part_buffer;
  const auto part_size = static_cast<size_t>(T * hq * chunks * rec);
  if (part_buffer.size() < part_size) part_buffer.resize(part_size);
  float* const part = part_buffer.data();
  parallel_for(T * chunks, 1, [&](int64_t b, int64_t e) {
    thread_local std::vector<float> score_buffer;
    if (score_buffer.size() < static_cast<size_t>(hq * chunk))
      score_buffer.resize(static_cast<size_t>(hq * chunk));
    for (int64_t item = b; item < e; ++item) {
      const int64_t t = item / chunks, c = item % chunks;
      int64_t lo, hi;
      visible(t, lo, hi);
      const int64_t c0 = std::max(lo, c * chunk), c1 = std::min(hi, (c + 1) * chunk);
      auto record = [&](int64_t h) { return part + ((t * hq + h) * chunks + c) * rec; };
      for (int64_t h = 0; h < hq; ++h) record(h)[0] = -kInf, record(h)[1] = 0.0f;
      if (c0 >= c1) continue;  // no visible key in this chunk
      // sc[h * chunk + j - c0]: head h's score of key j, then exp(score - max). The chunk's
      // rows are walked front to back, kKeyStep rows at a time for every head.
      float* const sc = score_buffer.data();
      for (int64_t j = c0; j < c1; j += kKeyStep) {
        for (int64_t h = 0; h < hq; ++h) {
          for (int64_t j4 = j; j4 < std::min(c1, j + kKeyStep); j4 += 4) {
            dot_keys(q + t * p.q_stride + h * dd, k + j4 * p.kv_stride + h / group * dd,
                     p.kv_stride, std::min<int64_t>(4, c1 - j4), dd, sc + h * chunk + (j4 - c0));
          }
        }
      }
      for (int64_t h = 0; h < hq; ++h) {
        float* r = record(h);
        float* sh = sc + h * chunk;
        f32x16 mv = splat(-kInf);
        map16(0, c1 - c0, [&](int64_t j, int64_t n) {  // lanes past n: not scores
          f32x16 sv = load_part(sh + j, n) * p.scale;
          if (p.softcap > 0.0f) sv = tanh16(sv / p.softcap) * p.softcap;
          store_part(sh + j, sv, n);
          mv = kLaneIndex < static_cast<float>(n) && sv > mv ? sv : mv;
        });
        float max_score = mv[0];
        for (int l = 1; l < kLanes; ++l) max_score = std::max(max_score, mv[l]);
        f32x16 sum_v = {};
        map16(0, c1 - c0, [&](int64_t j, int64_t n) {
          const f32x16 ev = exp16(load_part(sh + j, n) - max_score);
          store_part(sh + j, ev, n);
          sum_v += kLaneIndex < static_cast<float>(n) ? ev : splat(0.0f);
        });
        r[0] = max_score, r[1] = hsum(sum_v);
      }
      for (int64_t j = c0; j < c1; j += kKeyStep) {
        const int64_t n = std::min(kKeyStep, c1 - j);
        for (int64_t h = 0; h < hq; ++h) {
          weighted_rows_any(sc + h * chunk + (j - c0), v + j * p.kv_stride + h / group * dd,
                            p.kv_stride, n, dd, j > c0, record(h) + 2);
        }
      }
    }
  });
  // Merge: out = sum_c exp(m_c - m) o_c / sum_c exp(m_c - m) l_c, m the largest m_c.
  parallel_for(T * hq, 8, [&](int64_t b, int64_t e) {
    for (int64_t item = b; item < e; ++item) {
      const int64_t t = item / hq, h = item % hq;
      float* o = out + t * p.out_stride + h * dd;
      std::fill(o, o + dd, 0.0f);
      const float* first = part + item * chunks * rec;
      float m = -std::numeric_limits<float>::infinity();
      bool nan = false;  // NaN scores (a chunk's max skips them, its sum does not)
      for (int64_t c = 0; c < chunks; ++c) {
        m = std::max(m, first[c * rec]);
        nan = nan || std::isnan(first[c * rec + 1]);
      }
      if (nan) {
        std::fill(o, o + dd, std::numeric_limits<float>::quiet_NaN());
        continue;
      }
      if (m == -std::numeric_limits<float>::infinity()) continue;  // sees no key
      float l = 0.0f;
      for (int64_t c = 0; c < chunks; ++c) {
        const float* r = first + c * rec;
        if (r[1] == 0.0f) continue;  // an empty chunk
        const float w = std::exp(r[0] - m);
        l += w * r[1];
        for (int64_t d = 0; d < dd; ++d) o[d] += w * r[2 + d];
      }
      for (int64_t d = 0; d < dd; ++d) o[d] /= l;
    }
  });
}

// ---------------------------------------------------------------------------------------
// Attention, many queries (prefill, vision): flash-style tiles. A "row" is one (query,
// head) pair; the rows of one kv head share its keys. Keys are packed per kv head into
// blocks of 16, each transposed to [D][16], so that the scores of kQRows rows against 16
// keys accumulate in kQRows registers (one key load per kQRows FMAs). kKeyChunk keys at a
// time then go through an online softmax (running max m and sum l per row, the output
// rescaled when m grows) and their probabilities multiply V straight into the output
// rows. Memory: the packed keys (the size of K) and, per tile, kQRows x kKeyChunk scores
// and kQRows x D outputs; never T x S.

constexpr int64_t kQRows = 4;
constexpr int64_t kAmxRows = 32;  // query rows per tile on AMX (amx_gemm.h: two tiles of 16)
constexpr int64_t kQBlock = 64;   // rows per work item: its tiles share each key chunk
constexpr int64_t kKeyBlock = 16;
// Keys per chunk: 256 takes SigLIP's 224 px keys and the 267 of PaliGemma's prefix in one
// or two chunks, so that few rows pay the rescaling and its passes over the outputs (896 px
// SigLIP, bf16: 296 -> 316-318 GFLOP/s against 128; the same at 224 px, within noise;
// BM_attention, 2 threads).
constexpr int64_t kKeyChunk = 256;
// From this many queries the tiles pay for packing the keys.
constexpr int64_t kFlashMinQueries = 4;

// Stores one block of a score tile: rows r = 0..3 of the first 16 keys (first[r]) at
// col + r * kKeyChunk, and of the next 16 (second[r]) beside them where `two`.
inline void store_score_tile(float* col, bool two, const std::array<f32x16, 4>& first,
                             const std::array<f32x16, 4>& second) {
  for (int r = 0; r < 4; ++r) {
    store_f32(col + r * kKeyChunk, first[r]);
    if (two) store_f32(col + r * kKeyChunk + kKeyBlock, second[r]);
  }
}

// kt: packed key blocks ([D][16] each) from the chunk's first key; q: kQRows rows of D.
// s: [kQRows][kKeyChunk], columns [0, blocks * 16) written.
void score_tile(const float* const* q, const float* kt, int64_t dd, int64_t blocks, float* s) {
  for (int64_t b = 0; b < blocks; b += 2) {
    const bool two = b + 1 < blocks;
    const float* k0 = kt + b * dd * kKeyBlock;
    const float* k1 = two ? k0 + dd * kKeyBlock : k0;
    f32x16 a00 = {}, a01 = {}, a10 = {}, a11 = {}, a20 = {}, a21 = {}, a30 = {}, a31 = {};
    for (int64_t d = 0; d < dd; ++d) {
      f32x16 x0 = load_f32(k0 + d * kKeyBlock), x1 = load_f32(k1 + d * kKeyBlock);
      in_register(x0), in_register(x1);
      a00 += q[0][d] * x0, a01 += q[0][d] * x1;
      a10 += q[1][d] * x0, a11 += q[1][d] * x1;
      a20 += q[2][d] * x0, a21 += q[2][d] * x1;
      a30 += q[3][d] * x0, a31 += q[3][d] * x1;
    }
    store_score_tile(s + b * kKeyBlock, two, {a00, a10, a20, a30}, {a01, a11, a21, a31});
  }
}

// o[r][0:D] += sum_j p[r][j] v_j for the kQRows rows; v rows `stride` floats apart. Two
// 16-lane column blocks at a time, so 8 accumulators hide the FMA latency.
void pv_tile(const float* p, const float* v, int64_t stride, int64_t keys, int64_t dd, float* o) {
  typedef float f32x8 __attribute__((vector_size(32)));
  int64_t d0 = 0;
  for (; d0 + 2 * kLanes <= dd; d0 += 2 * kLanes) {
    f32x16 a0 = load_f32(o + 0 * dd + d0), a1 = load_f32(o + 1 * dd + d0);
    f32x16 a2 = load_f32(o + 2 * dd + d0), a3 = load_f32(o + 3 * dd + d0);
    f32x16 b0 = load_f32(o + 0 * dd + d0 + kLanes), b1 = load_f32(o + 1 * dd + d0 + kLanes);
    f32x16 b2 = load_f32(o + 2 * dd + d0 + kLanes), b3 = load_f32(o + 3 * dd + d0 + kLanes);
    for (int64_t j = 0; j < keys; ++j) {
      f32x16 va = load_f32(v + j * stride + d0), vb = load_f32(v + j * stride + d0 + kLanes);
      in_register(va), in_register(vb);
      const float p0 = p[0 * kKeyChunk + j], p1 = p[1 * kKeyChunk + j];
      const float p2 = p[2 * kKeyChunk + j], p3 = p[3 * kKeyChunk + j];
      a0 += p0 * va, b0 += p0 * vb, a1 += p1 * va, b1 += p1 * vb;
      a2 += p2 * va, b2 += p2 * vb, a3 += p3 * va, b3 += p3 * vb;
    }
    store_f32(o + 0 * dd + d0, a0), store_f32(o + 1 * dd + d0, a1);
    store_f32(o + 2 * dd + d0, a2), store_f32(o + 3 * dd + d0, a3);
    store_f32(o + 0 * dd + d0 + kLanes, b0), store_f32(o + 1 * dd + d0 + kLanes, b1);
    store_f32(o + 2 * dd + d0 + kLanes, b2), store_f32(o + 3 * dd + d0 + kLanes, b3);
  }
  for (; d0 + kLanes <= dd; d0 += kLanes) {
    f32x16 a0 = load_f32(o + 0 * dd + d0), a1 = load_f32(o + 1 * dd + d0);
    f32x16 a2 = load_f32(o + 2 * dd + d0), a3 = load_f32(o + 3 * dd + d0);
    for (int64_t j = 0; j < keys; ++j) {
      const f32x16 vj = load_f32(v + j * stride + d0);
      a0 += p[0 * kKeyChunk + j] * vj, a1 += p[1 * kKeyChunk + j] * vj;
      a2 += p[2 * kKeyChunk + j] * vj, a3 += p[3 * kKeyChunk + j] * vj;
    }
    store_f32(o + 0 * dd + d0, a0), store_f32(o + 1 * dd + d0, a1);
    store_f32(o + 2 * dd + d0, a2), store_f32(o + 3 * dd + d0, a3);
  }
  for (; d0 + 8 <= dd; d0 += 8) {  // head dim 72 leaves 8
    f32x8 a[kQRows];
    for (int64_t r = 0; r < kQRows; ++r) std::memcpy(&a[r], o + r * dd + d0, sizeof(f32x8));
    for (int64_t j = 0; j < keys; ++j) {
      f32x8 vj;
      std::memcpy(&vj, v + j * stride + d0, sizeof(vj));
      for (int64_t r = 0; r < kQRows; ++r) a[r] += p[r * kKeyChunk + j] * vj;
    }
    for (int64_t r = 0; r < kQRows; ++r) std::memcpy(o + r * dd + d0, &a[r], sizeof(f32x8));
  }
  for (; d0 < dd; ++d0) {
    for (int64_t r = 0; r < kQRows; ++r) {
      float acc = o[r * dd + d0];
      for (int64_t j = 0; j < keys; ++j) acc += p[r * kKeyChunk + j] * v[j * stride + d0];
      o[r * dd + d0] = acc;
    }
  }
}

// x[0:n] to bf16 by f32_to_bf16 (the flash tiles' queries; without AVX512-BF16, their
// probabilities); GCC vectorizes the loop (16 lanes of compare, round and pack).
inline void row_to_bf16(const float* x, int64_t n, uint16_t* out) {
  for (int64_t i = 0; i < n; ++i) out[i] = f32_to_bf16(x[i]);
}

// 16 lanes to bf16 at out, as row_to_bf16 gives them for normal numbers, zeros and NaNs
// (vcvtneps2bf16 rounds to nearest even too, but treats subnormals as zeros: the flash
// tiles' probabilities, e^x with x clamped at -87 (float32 path) or -125 ln 2 (bf16 path,
// exp_for_bf16) or exactly 0, are never subnormal).
inline void store_bf16(uint16_t* out, f32x16 v) {
#if defined(__AVX512BF16__)
  const __m256bh b = _mm512_cvtneps_pbh(static_cast<__m512>(v));
  std::memcpy(out, &b, sizeof(b));
#else
  float lanes[kLanes];
  std::memcpy(lanes, &v, sizeof(lanes));
  row_to_bf16(lanes, kLanes, out);
#endif
}

// x * s - m per lane, rounded once (a fused multiply-add where the CPU has one).
inline f32x16 scaled_minus(f32x16 x, float s, float m) {
#if defined(__AVX512F__)
  return f32x16(_mm512_fmadd_ps(static_cast<__m512>(x), _mm512_set1_ps(s), _mm512_set1_ps(-m)));
#else
  return x * s - m;
#endif
}

// e^(x s - m) per lane for probabilities that are rounded to bf16 next (8 significant
// bits): 2^t for t = x s log2(e) - m log2(e) (one fused multiply-add), held at t >= -125
// (e^-86.6, never subnormal, as exp16's clamp), t = n + f with n = round(t) and |f| <= 1/2,
// 2^f by its Taylor polynomial to degree 5 (remainder at most 2^(1/2) (ln2 / 2)^6 / 720 =
// 3.4e-6 relative, 1/570 to 1/1150 of bf16's half ulp across a binade) and 2^n applied by
// vscalefps: 10 vector operations, where exp16 takes 18.
inline f32x16 exp_for_bf16(f32x16 x, float s, float m) {
#if defined(__AVX512F__)
  constexpr float kLog2e = 1.44269504088896341f;
  __m512 t = _mm512_fmadd_ps(static_cast<__m512>(x), _mm512_set1_ps(s * kLog2e),
                             _mm512_set1_ps(-m * kLog2e));
  // (NaN as the second operand: vmaxps returns it where either is NaN, so NaN stays NaN.)
  t = _mm512_max_ps(_mm512_set1_ps(-125.0f), t);
  const __m512 n = _mm512_roundscale_ps(t, _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
  const __m512 f = _mm512_sub_ps(t, n);
  // ln(2)^i / i!
  __m512 p = _mm512_set1_ps(1.3333558146e-3f);
  p = _mm512_fmadd_ps(p, f, _mm512_set1_ps(9.6181291076e-3f));
  p = _mm512_fmadd_ps(p, f, _mm512_set1_ps(5.5504108665e-2f));
  p = _mm512_fmadd_ps(p, f, _mm512_set1_ps(2.4022650696e-1f));
  p = _mm512_fmadd_ps(p, f, _mm512_set1_ps(6.9314718056e-1f));
  p = _mm512_fmadd_ps(p, f, _mm512_set1_ps(1.0f));
  return f32x16(_mm512_scalef_ps(p, n));
#else
  // (The same clamp, so that values and the bound hold alike: exp16 alone stops at -87.)
  f32x16 t = x * s - m;
  t = t < splat(-86.6433976f) ? splat(-86.6433976f) : t;  // -125 ln 2; NaN stays NaN
  return exp16(t);
#endif
}

// The largest of v's lanes.
inline float hmax(f32x16 v) {
#if defined(__AVX512F__)
  return _mm512_reduce_max_ps(static_cast<__m512>(v));
#else
  float m = v[0];
  for (int i = 1; i < kLanes; ++i) m = std::max(m, v[i]);
  return m;
#endif
}

#if defined(__AVX512BF16__) && defined(__AVX512VL__) && defined(__AVX512BW__)
constexpr bool kHaveBf16Dot = true;
inline __m512bh as_bh(__m512i v) { return reinterpret_cast<__m512bh&>(v); }
inline __m256bh as_bh(__m256i v) { return reinterpret_cast<__m256bh&>(v); }
// The pair of bf16 at p in every lane, broadcast from memory (vpbroadcastd zmm, m32 is a
// load alone; GCC made _mm512_set1_epi32 of a memcpy'd pair a move to a general register
// and a broadcast from it, a vector-pipe uop beside every few vdpbf16ps).
inline __m512i broadcast_pair(const uint16_t* p) {
  return _mm512_broadcastd_epi32(_mm_loadu_si32(p));
}

// score_tile with q and k rounded to bf16 and vdpbf16ps (two products per lane and
// instruction, f32 sums). kt: key blocks [D/2][16][2] bf16; q: kQRows rows of D bf16.
void score_tile_bf16(const uint16_t* const* q, const uint16_t* kt, int64_t dd, int64_t blocks,
                     float* s) {
  const int64_t pairs = dd / 2;
  int64_t b = 0;
  // Four key blocks at a time: 16 accumulators, 4 key loads and 4 query broadcasts per 16
  // vdpbf16ps (two blocks at a time need 6 loads per 8).
  for (; b + 4 <= blocks; b += 4) {
    const uint16_t* k0 = kt + b * dd * kKeyBlock;
    __m512 acc[kQRows][4];
    for (auto& row : acc)
      for (auto& a : row) a = _mm512_setzero_ps();
    for (int64_t d2 = 0; d2 < pairs; ++d2) {
      __m512bh kv[4];
      for (int64_t i = 0; i < 4; ++i)
        kv[i] = as_bh(_mm512_loadu_si512(k0 + (i * dd + d2 * 2) * kKeyBlock));
      for (int64_t r = 0; r < kQRows; ++r) {
        uint32_t qq;
        std::memcpy(&qq, q[r] + 2 * d2, sizeof(qq));
        const __m512bh qr = as_bh(_mm512_set1_epi32(static_cast<int>(qq)));
        for (int64_t i = 0; i < 4; ++i) acc[r][i] = _mm512_dpbf16_ps(acc[r][i], kv[i], qr);
      }
    }
    for (int64_t i = 0; i < 4; i += 2) {
      store_score_tile(s + (b + i) * kKeyBlock, true,
                       {f32x16(acc[0][i]), f32x16(acc[1][i]), f32x16(acc[2][i]), f32x16(acc[3][i])},
                       {f32x16(acc[0][i + 1]), f32x16(acc[1][i + 1]), f32x16(acc[2][i + 1]),
                        f32x16(acc[3][i + 1])});
    }
  }
  for (; b < blocks; b += 2) {
    const bool two = b + 1 < blocks;
    const uint16_t* k0 = kt + b * dd * kKeyBlock;
    const uint16_t* k1 = two ? k0 + dd * kKeyBlock : k0;
    __m512 a00 = _mm512_setzero_ps(), a01 = a00, a10 = a00, a11 = a00, a20 = a00, a21 = a00,
           a30 = a00, a31 = a00;
    for (int64_t d2 = 0; d2 < pairs; ++d2) {
      const __m512bh x0 = as_bh(_mm512_loadu_si512(k0 + d2 * 2 * kKeyBlock));
      const __m512bh x1 = as_bh(_mm512_loadu_si512(k1 + d2 * 2 * kKeyBlock));
      uint32_t qq[kQRows];
      for (int64_t r = 0; r < kQRows; ++r) std::memcpy(&qq[r], q[r] + 2 * d2, sizeof(uint32_t));
      const __m512bh q0 = as_bh(_mm512_set1_epi32(static_cast<int>(qq[0])));
      const __m512bh q1 = as_bh(_mm512_set1_epi32(static_cast<int>(qq[1])));
      const __m512bh q2 = as_bh(_mm512_set1_epi32(static_cast<int>(qq[2])));
      const __m512bh q3 = as_bh(_mm512_set1_epi32(static_cast<int>(qq[3])));
      a00 = _mm512_dpbf16_ps(a00, x0, q0), a01 = _mm512_dpbf16_ps(a01, x1, q0);
      a10 = _mm512_dpbf16_ps(a10, x0, q1), a11 = _mm512_dpbf16_ps(a11, x1, q1);
      a20 = _mm512_dpbf16_ps(a20, x0, q2), a21 = _mm512_dpbf16_ps(a21, x1, q2);
      a30 = _mm512_dpbf16_ps(a30, x0, q3), a31 = _mm512_dpbf16_ps(a31, x1, q3);
    }
    store_score_tile(s + b * kKeyBlock, two, {f32x16(a00), f32x16(a10), f32x16(a20), f32x16(a30)},
                     {f32x16(a01), f32x16(a11), f32x16(a21), f32x16(a31)});
  }
}

// pv_tile_bf16 on the columns [d0, d0 + 16 NV + 8 T) of rows ld floats apart, the kQRows x
// (16 NV + 8 T) outputs held in registers: each pair's probabilities are broadcast once per
// row and slab. Narrow heads take one slab (SigLIP's 72: NV = 4, T = 1, where 32-column
// passes broadcast them three times); wide ones slabs of 64 columns (16 accumulators, 4 value
// loads and 4 broadcasts per 16 vdpbf16ps).
template <int NV, int T>
void pv_slab_bf16(const uint16_t* pb, const uint16_t* vt, int64_t npairs, int64_t ld, int64_t d0,
                  float* o) {
  __m512 a[kQRows][NV];
  __m256 t[kQRows][std::max(T, 1)];  // (T = 0: unused)
  for (int64_t r = 0; r < kQRows; ++r) {
    for (int c = 0; c < NV; ++c) a[r][c] = _mm512_loadu_ps(o + r * ld + d0 + 16 * c);
    if (T > 0) t[r][0] = _mm256_loadu_ps(o + r * ld + d0 + 16 * NV);
  }
  for (int64_t jp = 0; jp < npairs; ++jp) {
    __m512bh v[NV];
    for (int c = 0; c < NV; ++c) v[c] = as_bh(_mm512_loadu_si512(vt + (jp * ld + d0 + 16 * c) * 2));
    __m256bh vt8 = {};
    if (T > 0) {
      vt8 = as_bh(
          _mm256_loadu_si256(reinterpret_cast<const __m256i*>(vt + (jp * ld + d0 + 16 * NV) * 2)));
    }
    for (int64_t r = 0; r < kQRows; ++r) {
      const __m512i w = broadcast_pair(pb + r * kKeyChunk + 2 * jp);
      for (int c = 0; c < NV; ++c) a[r][c] = _mm512_dpbf16_ps(a[r][c], v[c], as_bh(w));
      if (T > 0) t[r][0] = _mm256_dpbf16_ps(t[r][0], vt8, as_bh(_mm512_castsi512_si256(w)));
    }
  }
  for (int64_t r = 0; r < kQRows; ++r) {
    for (int c = 0; c < NV; ++c) _mm512_storeu_ps(o + r * ld + d0 + 16 * c, a[r][c]);
    if (T > 0) _mm256_storeu_ps(o + r * ld + d0 + 16 * NV, t[r][0]);
  }
}

// pv_tile with p and v rounded to bf16: pb: kQRows rows of kKeyChunk bf16 probabilities
// (pairs of keys adjacent); vt: value pairs [pairs][D][2] bf16 from the chunk's first key.
// D must be a multiple of 8.
void pv_tile_bf16(const uint16_t* pb, const uint16_t* vt, int64_t npairs, int64_t dd, float* o) {
  switch (dd) {  // narrow heads: the whole output row in registers
    case 72: return pv_slab_bf16<4, 1>(pb, vt, npairs, dd, 0, o);
    case 80: return pv_slab_bf16<5, 0>(pb, vt, npairs, dd, 0, o);
    default: break;
  }
  int64_t d0 = 0;
  for (; d0 + 64 <= dd; d0 += 64) pv_slab_bf16<4, 0>(pb, vt, npairs, dd, d0, o);
  auto pair_of = [&](int64_t r, int64_t jp) { return broadcast_pair(pb + r * kKeyChunk + 2 * jp); };
  for (; d0 + 32 <= dd; d0 += 32) {
    __m512 a[kQRows], b[kQRows];
    for (int64_t r = 0; r < kQRows; ++r)
      a[r] = _mm512_loadu_ps(o + r * dd + d0), b[r] = _mm512_loadu_ps(o + r * dd + d0 + 16);
    for (int64_t jp = 0; jp < npairs; ++jp) {
      const __m512bh va = as_bh(_mm512_loadu_si512(vt + (jp * dd + d0) * 2));
      const __m512bh vb = as_bh(_mm512_loadu_si512(vt + (jp * dd + d0 + 16) * 2));
      for (int64_t r = 0; r < kQRows; ++r) {
        const __m512bh pr = as_bh(pair_of(r, jp));
        a[r] = _mm512_dpbf16_ps(a[r], va, pr), b[r] = _mm512_dpbf16_ps(b[r], vb, pr);
      }
    }
    for (int64_t r = 0; r < kQRows; ++r)
      _mm512_storeu_ps(o + r * dd + d0, a[r]), _mm512_storeu_ps(o + r * dd + d0 + 16, b[r]);
  }
  for (; d0 + 16 <= dd; d0 += 16) {
    __m512 a[kQRows];
    for (int64_t r = 0; r < kQRows; ++r) a[r] = _mm512_loadu_ps(o + r * dd + d0);
    for (int64_t jp = 0; jp < npairs; ++jp) {
      const __m512bh va = as_bh(_mm512_loadu_si512(vt + (jp * dd + d0) * 2));
      for (int64_t r = 0; r < kQRows; ++r) a[r] = _mm512_dpbf16_ps(a[r], va, as_bh(pair_of(r, jp)));
    }
    for (int64_t r = 0; r < kQRows; ++r) _mm512_storeu_ps(o + r * dd + d0, a[r]);
  }
  for (; d0 + 8 <= dd; d0 += 8) {
    __m256 a[kQRows];
    for (int64_t r = 0; r < kQRows; ++r) a[r] = _mm256_loadu_ps(o + r * dd + d0);
    for (int64_t jp = 0; jp < npairs; ++jp) {
      const __m256bh va =
          as_bh(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(vt + (jp * dd + d0) * 2)));
      for (int64_t r = 0; r < kQRows; ++r)
        a[r] = _mm256_dpbf16_ps(a[r], va, as_bh(_mm512_castsi512_si256(pair_of(r, jp))));
    }
    for (int64_t r = 0; r < kQRows; ++r) _mm256_storeu_ps(o + r * dd + d0, a[r]);
  }
}
#else
constexpr bool kHaveBf16Dot = false;
void score_tile_bf16(const uint16_t* const*, const uint16_t*, int64_t, int64_t, float*) {}
void pv_tile_bf16(const uint16_t*, const uint16_t*, int64_t, int64_t, float*) {}
#endif

// One block of kKeyBlock keys of a kv head for the bf16 tiles: rows `first` to first +
// kKeyBlock of k and v (float32 kf, vf or bf16 kh, vh; rows `stride` elements apart, from
// the head's first column; rows at or past `valid` as zeros) into kd [dk/2][16][2] (the
// block's keys transposed, a pair of dims per key, zeros from D to dk >= D: the AMX tiles
// read dims in steps of 32) and vd [8 pairs][D][2] (each pair of
// keys side by side per dim). Float32 values are rounded to bf16 by vcvtne2ps2bf16 (to
// nearest even, as f32_to_bf16, but subnormals become zeros). 32 dims at a time: the 16
// keys' pairs of dims through a 16 x 16 transpose of dwords, and each pair of value rows
// interleaved by one vpermt2w per 32 outputs. (The scalar loops before took 10.7% of
// SigLIP's attention under perf; BM_attention/siglip_256x256_bf16, alternating in one
// process, 12 rounds: 6.6% faster.)
#if defined(__AVX512BF16__) && defined(__AVX512VL__) && defined(__AVX512BW__)
// n <= 32 values of a row from its column c0 as 32 bf16 (zeros past n).
inline __m512i bf16x32(const float* f, const uint16_t* h, int64_t n) {
  if (h != nullptr) return _mm512_maskz_loadu_epi16(first_n32(n), h);
  const __m512 lo = _mm512_maskz_loadu_ps(first_n16(n), f);
  const __m512 hi = _mm512_maskz_loadu_ps(first_n16(n - 16), f + 16);
  return reinterpret_cast<__m512i>(_mm512_cvtne2ps_pbh(hi, lo));
}
void pack_kv_block_bf16(const float* kf, const float* vf, const uint16_t* kh, const uint16_t* vh,
                        int64_t stride, int64_t first, int64_t valid, int64_t dd, int64_t dk,
                        int64_t dv, uint16_t* kd, uint16_t* vd) {
  auto row = [&](const float* f, const uint16_t* h, int64_t j, int64_t c0, int64_t n) {
    if (j >= valid) return _mm512_setzero_si512();
    return bf16x32(f != nullptr ? f + j * stride + c0 : nullptr,
                   h != nullptr ? h + j * stride + c0 : nullptr, n);
  };
  // Lanes 2i and 2i + 1 of the interleaved pair: element i of a and of b (index 32 + i).
  alignas(64) static constexpr uint16_t kLo[32] = {0,  32, 1,  33, 2,  34, 3,  35, 4,  36, 5,
                                                   37, 6,  38, 7,  39, 8,  40, 9,  41, 10, 42,
                                                   11, 43, 12, 44, 13, 45, 14, 46, 15, 47};
  const __m512i lo_idx = _mm512_load_si512(kLo);
  const __m512i hi_idx = _mm512_add_epi16(lo_idx, _mm512_set1_epi16(16));
  for (int64_t c0 = 0; c0 < dd; c0 += 32) {
    const int64_t n = std::min<int64_t>(32, dd - c0);
    const int64_t nv = std::min<int64_t>(32, dv - c0);  // (value dims D..dv: zeros)
    __m512i r[16];
    for (int64_t jj = 0; jj < kKeyBlock; ++jj) r[jj] = row(kf, kh, first + jj, c0, n);
    ::pg::kernels::transpose16(r);  // r[i] lane jj: key jj's pair of dims c0 / 2 + i
    for (int64_t i = 0; i < n / 2; ++i)
      _mm512_storeu_si512(kd + (c0 / 2 + i) * kKeyBlock * 2, r[i]);
    for (int64_t jj = 0; jj < kKeyBlock; jj += 2) {
      const __m512i a = row(vf, vh, first + jj, c0, n), b = row(vf, vh, first + jj + 1, c0, n);
      uint16_t* out = vd + (jj / 2) * dv * 2 + 2 * c0;
      _mm512_mask_storeu_epi16(out, first_n32(2 * nv), _mm512_permutex2var_epi16(a, lo_idx, b));
      _mm512_mask_storeu_epi16(out + 32, first_n32(2 * nv - 32),
                               _mm512_permutex2var_epi16(a, hi_idx, b));
    }
  }
  for (int64_t i = dd / 2; i < dk / 2; ++i)
    _mm512_storeu_si512(kd + i * kKeyBlock * 2, _mm512_setzero_si512());
}
#else
// (Only the bf16 tiles call it, and they run where kHaveBf16Dot: as their stubs above.)
void pack_kv_block_bf16(const float*, const float*, const uint16_t*, const uint16_t*, int64_t,
                        int64_t, int64_t, int64_t, int64_t, int64_t, uint16_t*, uint16_t*) {}
#endif

// k, v: float32, or bf16 where p.kv_bf16 (bf16 tiles only: their packing copies bf16
// rows as they are, where it rounds float32 ones).
template <bool kBf16>
void attention_flash(const AttentionParams& p, const float* q, const void* k_any, const void* v_any,
                     float* out) {
  const auto* k = static_cast<const float*>(k_any);
  const auto* v = static_cast<const float*>(v_any);
  const auto* k16 = static_cast<const uint16_t*>(k_any);
  const auto* v16 = static_cast<const uint16_t*>(v_any);
  const int64_t dd = p.head_dim, s_len = p.num_keys, hkv = p.num_kv_heads;
  const int64_t group = p.num_heads / hkv, rows = p.num_queries * group;
  const int64_t blocks = (s_len + kKeyBlock - 1) / kKeyBlock;
  // AMX tiles take the bf16 products 32 rows at a time (amx_gemm.h) and read keys and dims
  // in steps of 32: each head's blocks run two past its last (zeros), each key's dims are
  // zero up to the next multiple of 32, and the buffer runs 32 elements on.
  const bool amx = kBf16 && amx_products_run();
  const int64_t hblocks = blocks + (amx ? 2 : 0);     // blocks per kv head
  const int64_t rt = amx ? kAmxRows : kQRows;         // query rows per tile
  const int64_t dk = amx ? (dd + 31) / 32 * 32 : dd;  // dims per packed key
  // Dims per packed value and per row of the outputs' sums: for the tiles, whole cache
  // lines (a value tile's rows and an accumulator's 64 bytes apart times 16 dims' pairs or
  // floats, not straddling lines as SigLIP's 72 dims would; the padding zero).
  const int64_t dv = amx ? (dd + 15) / 16 * 16 : dd;

  // f32: kt [hkv][blocks][D][16]. bf16: kt16 [hkv][hblocks][dk/2][16][2] and values vt16
  // [hkv][hblocks * 8 pairs][dv][2]. Keys past S as zeros.
  // (Every buffer the tiles read or write is on whole cache lines, with rows of whole lines:
  // a tile's rows that straddle two lines cost two accesses each. glibc's malloc gave
  // std::vector 16 bytes past a line, and amx_attention_scores / _pv ran 2-3x slower:
  // 605 against 1110-1161 GFLOP/s and 511-524 against 1727-1736 for SigLIP's chunk of 32
  // rows by 256 keys, one thread, session 31.)
  thread_local LineAlignedVector<float> packed;
  thread_local LineAlignedVector<uint16_t> packed16;
  const int64_t per_head = hblocks * dd * kKeyBlock, per_head_k = hblocks * dk * kKeyBlock,
                per_head_v = hblocks * dv * kKeyBlock;
  float* kt = nullptr;
  uint16_t *kt16 = nullptr, *vt16 = nullptr;
  if (kBf16) {
    packed16.resize(static_cast<size_t>(hkv * (per_head_k + per_head_v) + 32));
    kt16 = packed16.data();
    vt16 = kt16 + hkv * per_head_k;
  } else {
    packed.resize(static_cast<size_t>(hkv * per_head));
    kt = packed.data();
  }
  parallel_for(hkv * hblocks, 8, [&](int64_t b0, int64_t b1) {
    for (int64_t item = b0; item < b1; ++item) {
      const int64_t g = item / hblocks, blk = item % hblocks;
      if (kBf16) {
        const bool h = p.kv_bf16;
        pack_kv_block_bf16(h ? nullptr : k + g * dd, h ? nullptr : v + g * dd,
                           h ? k16 + g * dd : nullptr, h ? v16 + g * dd : nullptr, p.kv_stride,
                           blk * kKeyBlock, s_len, dd, dk, dv, kt16 + item * dk * kKeyBlock,
                           vt16 + g * per_head_v + (blk * kKeyBlock / 2) * dv * 2);
        continue;
      }
      float* kd = kt + item * dd * kKeyBlock;
      for (int64_t jj = 0; jj < kKeyBlock; ++jj) {
        const int64_t j = blk * kKeyBlock + jj;
        const float* ks = k + j * p.kv_stride + g * dd;
        for (int64_t d = 0; d < dd; ++d) kd[d * kKeyBlock + jj] = j < s_len ? ks[d] : 0.0f;
      }
    }
  });

  // Work items: blocks of kQBlock rows of one kv head. Each key chunk (keys and values,
  // kKeyChunk of each) is loaded once per block and used by all its tiles of
  // kQRows rows while it sits in L1/L2.
  const int64_t blocks_per_head = (rows + kQBlock - 1) / kQBlock;
  parallel_for(hkv * blocks_per_head, 1, [&](int64_t i0, int64_t i1) {
    // (q rounded to bf16, rows as wide as a packed key: zeros past D up to dk.)
    const int64_t ldq = dk;
    LineAlignedVector<float> o(static_cast<size_t>(kQBlock * dv)),
        sc(static_cast<size_t>(rt * kKeyChunk));
    LineAlignedVector<uint16_t> qb(kBf16 ? static_cast<size_t>(kQBlock * ldq) : 0),
        pb(kBf16 ? static_cast<size_t>(rt * kKeyChunk) : 0);
    const uint16_t* qbr[kQBlock];
    const float* qr[kQBlock];
    float* outr[kQBlock];
    int64_t lo[kQBlock], hi[kQBlock];
    float m[kQBlock], l[kQBlock];
    const float ninf = -std::numeric_limits<float>::infinity();
    // (Copies, not p's fields: the probabilities' stores may alias anything as far as the
    // compiler knows, and the exponent loop reloaded p.scale and rebuilt its constants on
    // every 16 columns: 14 vector instructions per 16 columns, now 12; no change in time
    // that alternating runs could resolve.)
    const float scale = p.scale, softcap = p.softcap;
    for (int64_t item = i0; item < i1; ++item) {
      const int64_t g = item / blocks_per_head, r0 = (item % blocks_per_head) * kQBlock;
      int64_t lo_all = s_len, hi_all = 0;
      for (int64_t r = 0; r < kQBlock; ++r) {
        const bool real = r0 + r < rows;
        const int64_t row = real ? r0 + r : r0;  // padding rows repeat the first, unused
        const int64_t t = row / group, h = g * group + row % group, i = p.query_offset + t;
        qr[r] = q + t * p.q_stride + h * dd;
        outr[r] = real ? out + t * p.out_stride + h * dd : nullptr;
        lo[r] = 0, hi[r] = s_len;
        if (p.causal) hi[r] = std::min(s_len, std::max(p.prefix_len, i + 1));
        if (p.sliding_window > 0) lo[r] = std::max<int64_t>(0, i - p.sliding_window + 1);
        if (!real) hi[r] = lo[r];  // sees nothing
        if (lo[r] < hi[r]) lo_all = std::min(lo_all, lo[r]), hi_all = std::max(hi_all, hi[r]);
        m[r] = ninf, l[r] = 0.0f;
        if (kBf16) {
          uint16_t* dst = qb.data() + r * ldq;
          row_to_bf16(qr[r], dd, dst);
          qbr[r] = dst;
        }
      }
      std::fill(o.begin(), o.end(), 0.0f);
      for (int64_t j0 = lo_all / kKeyBlock * kKeyBlock; j0 < hi_all; j0 += kKeyChunk) {
        const int64_t keys = std::min(kKeyChunk, hi_all - j0);
        const int64_t nblk = (keys + kKeyBlock - 1) / kKeyBlock;
        // (Zeros in the probabilities up to the tiles' next step of 32 keys.)
        const int64_t pcols = amx ? (nblk * kKeyBlock + 31) / 32 * 32 : nblk * kKeyBlock;
        for (int64_t t0 = 0; t0 < kQBlock; t0 += rt) {
          bool any = false;
          for (int64_t r = t0; r < t0 + rt; ++r)
            any |= lo[r] < std::min(hi[r], j0 + keys) && hi[r] > j0;
          if (!any) continue;
          if (amx) {
            amx_attention_scores(qbr[t0], ldq,
                                 kt16 + (g * hblocks + j0 / kKeyBlock) * dk * kKeyBlock, dk, nblk,
                                 sc.data(), kKeyChunk);
          } else if (kBf16) {
            score_tile_bf16(qbr + t0, kt16 + (g * hblocks + j0 / kKeyBlock) * dk * kKeyBlock, dd,
                            nblk, sc.data());
          } else {
            score_tile(qr + t0, kt + (g * blocks + j0 / kKeyBlock) * dd * kKeyBlock, dd, nblk,
                       sc.data());
          }
          for (int64_t r = t0; r < t0 + rt; ++r) {
            float* sr = sc.data() + (r - t0) * kKeyChunk;
            // Visible columns of this row in the chunk: [c0, c1).
            const int64_t c0 = std::clamp<int64_t>(lo[r] - j0, 0, keys),
                          c1 = std::clamp<int64_t>(hi[r] - j0, 0, keys);
            // bf16: the row's probabilities, rounded (columns past the chunk's keys, up to
            // its last block of 16, or on AMX to its next step of 32 keys, zeros; the
            // products read no further).
            uint16_t* pr = kBf16 ? pb.data() + (r - t0) * kKeyChunk : nullptr;
            if (c0 >= c1) {  // (every column: the bf16 products read keys in pairs)
              if (kBf16) {
                std::fill(pr, pr + pcols, uint16_t{0});
              } else {
                std::fill(sr, sr + nblk * kKeyBlock, 0.0f);
              }
              continue;
            }
            // (Most chunks are visible whole: SigLIP's and the prefix's rows see every key.)
            const bool whole = c0 == 0 && c1 == nblk * kKeyBlock;
            // Visible whole and neither capped nor masked: the scaling goes into the
            // exponent's argument, one fused multiply-add, and the pass for the maximum only
            // reads (the largest scaled score is the largest score scaled: scale > 0 and
            // rounding keeps order). Else the chunk's scores are scaled (and capped) in
            // place, columns outside [c0, c1) masked to -inf. (BM_attention, alternating with
            // the scaling pass in one process, 12 rounds: SigLIP bf16 4.6% faster at 224 px,
            // 5.7% at 896; Gemma's within noise.)
            const bool plain = whole && softcap <= 0.0f && scale > 0.0f;
            auto scaled = [&](int64_t c) {
              f32x16 x = load_f32(sr + c);
              if (!plain) {
                x *= scale;
                if (softcap > 0.0f) x = tanh16(x / softcap) * softcap;
                if (!whole) {
                  const f32x16 col = splat(static_cast<float>(c)) + kLaneIndex;
                  x = (col >= static_cast<float>(c0)) & (col < static_cast<float>(c1))
                          ? x
                          : splat(ninf);
                }
                store_f32(sr + c, x);
              }
              return x;
            };
            // (Four maxima side by side: one chain of 16 dependent vmaxps per chunk was
            // bound by their latency.)
            auto vmax_of = [](f32x16 a, f32x16 b) { return a > b ? a : b; };
            f32x16 vm0 = splat(ninf), vm1 = vm0, vm2 = vm0, vm3 = vm0;
            const int64_t ncols = nblk * kKeyBlock;
            int64_t cm = 0;
            for (; cm + 4 * kLanes <= ncols; cm += 4 * kLanes) {
              vm0 = vmax_of(vm0, scaled(cm));
              vm1 = vmax_of(vm1, scaled(cm + kLanes));
              vm2 = vmax_of(vm2, scaled(cm + 2 * kLanes));
              vm3 = vmax_of(vm3, scaled(cm + 3 * kLanes));
            }
            for (; cm < ncols; cm += kLanes) vm0 = vmax_of(vm0, scaled(cm));
            const f32x16 vmax = vmax_of(vmax_of(vm0, vm1), vmax_of(vm2, vm3));
            const float m_new = std::max(m[r], plain ? hmax(vmax) * scale : hmax(vmax));
            const float corr = std::exp(m[r] - m_new);  // 0 on the row's first visible chunk
            m[r] = m_new;
            f32x16 vsum = {};
            for (int64_t c = 0; c < ncols; c += kLanes) {
              const f32x16 x = load_f32(sr + c);
              // (bf16: the probabilities are rounded to 8 bits next, and exp_for_bf16 is
              // within 3.4e-6 and float32 rounding; BM_attention-shaped runs alternating in one
              // process: 4-10% faster.)
              f32x16 e;
              if constexpr (kBf16) {
                e = plain              ? exp_for_bf16(x, scale, m_new)
                    : x == splat(ninf) ? splat(0.0f)
                                       : exp_for_bf16(x, 1.0f, m_new);
              } else {
                e = plain              ? exp16(scaled_minus(x, scale, m_new))
                    : x == splat(ninf) ? splat(0.0f)
                                       : exp16(x - m_new);
              }
              if (kBf16) {
                store_bf16(pr + c, e);
              } else {
                store_f32(sr + c, e);
              }
              vsum += e;
            }
            if (kBf16) std::fill(pr + nblk * kKeyBlock, pr + pcols, uint16_t{0});
            l[r] = l[r] * corr + hsum(vsum);
            if (corr != 1.0f) {
              float* orow = o.data() + r * dv;
              for (int64_t d = 0; d < dd; ++d) orow[d] *= corr;
            }
          }
          if (amx) {
            amx_attention_pv(pb.data(), kKeyChunk, vt16 + g * per_head_v + (j0 / 2) * dv * 2, dv,
                             dd, keys, o.data() + t0 * dv, dv);
          } else if (kBf16) {
            pv_tile_bf16(pb.data(), vt16 + g * per_head_v + (j0 / 2) * dv * 2, (keys + 1) / 2, dd,
                         o.data() + t0 * dv);  // (dv == dd off the tiles)
          } else {
            pv_tile(sc.data(), v + j0 * p.kv_stride + g * dd, p.kv_stride, keys, dd,
                    o.data() + t0 * dv);
          }
        }
      }
      for (int64_t r = 0; r < kQBlock; ++r) {
        if (outr[r] == nullptr) continue;
        const float inv = l[r] > 0.0f ? 1.0f / l[r] : 0.0f;
        for (int64_t d = 0; d < dd; ++d) outr[r][d] = o[static_cast<size_t>(r * dv + d)] * inv;
      }
    }
  });
}

// q: [T, q_stride], k, v: [S, kv_stride] (float32, or bf16 where p.kv_bf16), out: [T,
// out_stride].
void attention(const AttentionParams& p, const float* q, const void* k, const void* v, float* out) {
  const bool tiles = p.num_queries >= kFlashMinQueries && p.num_keys > 0;
  if (tiles && p.low_precision && kHaveBf16Dot && p.head_dim % 8 == 0)
    return attention_flash<true>(p, q, k, v, out);
  if (p.kv_bf16) {
    const auto* k16 = static_cast<const uint16_t*>(k);
    const auto* v16 = static_cast<const uint16_t*>(v);
    if (!tiles) return attention_rows(p, q, k16, v16, out);
    // The float32 tiles (no bf16 dot product here, or a head dim they do not take): the
    // keys and values widened to the float32 they represent first.
    thread_local std::vector<float> kf, vf;
    const int64_t n = p.num_keys * p.kv_stride;
    kf.resize(static_cast<size_t>(n)), vf.resize(static_cast<size_t>(n));
    convert_to_f32(DType::kBF16, k, kf.data(), n);
    convert_to_f32(DType::kBF16, v, vf.data(), n);
    AttentionParams f = p;
    f.kv_bf16 = false;
    return attention_flash<false>(f, q, kf.data(), vf.data(), out);
  }
  if (tiles) return attention_flash<false>(p, q, k, v, out);
  attention_rows(p, q, static_cast<const float*>(k), static_cast<const float*>(v), out);
}

}  // namespace

void gelu_tanh_mul_span(const float* gate, const float* up, float* y, int64_t n) {
  map16(0, n, [&](int64_t i, int64_t c) {
    store_part(y + i, gelu16(load_part(gate + i, c)) * load_part(up + i, c), c);
  });
}

void exp_for_bf16_span(const float* x, float s, float m, float* y, int64_t n) {
  map16(0, n, [&](int64_t i, int64_t c) {
    store_part(y + i, exp_for_bf16(load_part(x + i, c), s, m), c);
  });
}

const KernelTable& fast_kernels() {
  static const KernelTable table = {
      "fast",     matmul,   matmul_many, matmul_gelu_mul, mlp,
      layer_norm, rms_norm, gelu_tanh,   gelu_tanh_mul,   rope,
      softcap,    add,      scale,       argmax,          attention,
  };
  return table;
}

}  // namespace pg::kernels
