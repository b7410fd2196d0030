// Fast kernels: OpenMP-parallel (pg::parallel_for), cache- and register-blocked loops over
// 16-float GCC vectors, which compile to AVX-512 zmm code under -march=native, to pairs
// of ymm ops on AVX2, and to scalar code elsewhere. Results match the reference table up
// to the reordering of float32 sums; elementwise transcendental ops use the same
// std:: functions and the same expressions as the reference.
#include <algorithm>
#include <array>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <limits>
#include <utility>
#include <vector>

#if defined(__AVX512F__) || defined(__F16C__)
#include <immintrin.h>
#endif

#include "base/parallel.h"
#include "kernels/kernels.h"
#include "kernels/onednn.h"
#include "kernels/quant.h"
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

// Sum of the 16 lanes, as a tree (halving the vector, which compiles to extracts).
inline float hsum(f32x16 v) {
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
// Matmul, small m (decode): dot products of MR rows of x with 4 rows of W, converting W
// on the fly. Memory-bound for m = 1; parallel over blocks of W rows.

// x: [mr, k]; w: 4 row pointers of k elements; out[i][r] = x_i . w_r.
template <DType D, int MR>
void dot_tile(const float* x, int64_t k, const typename Weight<D>::Elem* const* w, float out[][4]) {
  using Wt = Weight<D>;
  f32x16 acc[MR][4] = {};
  int64_t p = 0;
  for (; p + kLanes <= k; p += kLanes) {
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
void matmul_small_m(const float* x, int64_t m, const MatrixView& w, const float* bias, float* y) {
  using Elem = typename Weight<D>::Elem;
  const int64_t n = w.rows, k = w.cols;
  const auto* wd = static_cast<const Elem*>(w.data);
  const int64_t blocks = (n + 3) / 4;
  const int64_t grain = std::max<int64_t>(1, 8192 / std::max<int64_t>(1, k * m));
  parallel_for(blocks, grain, [&](int64_t b0, int64_t b1) {
    for (int64_t b = b0; b < b1; ++b) {
      const int64_t r0 = b * 4, nr = std::min<int64_t>(4, n - r0);
      const Elem* rows[4];
      // Rows past n repeat the last row; their results are dropped.
      for (int r = 0; r < 4; ++r) rows[r] = wd + (r0 + std::min<int64_t>(r, nr - 1)) * k;
      for (int64_t i0 = 0; i0 < m; i0 += 4) {
        float out[4][4];
        const float* xi = x + i0 * k;
        switch (std::min<int64_t>(4, m - i0)) {
          case 1: dot_tile<D, 1>(xi, k, rows, out); break;
          case 2: dot_tile<D, 2>(xi, k, rows, out); break;
          case 3: dot_tile<D, 3>(xi, k, rows, out); break;
          default: dot_tile<D, 4>(xi, k, rows, out); break;
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
  // Prefill and vision shapes: oneDNN's GEMM (exact float32, or bf16 where allowed).
  if (m >= kOneDnnMinRows) {
    if (w.dtype == DType::kF32 &&
        onednn_matmul_f32(x, m, static_cast<const float*>(w.data), n, k, bias, y))
      return;
    if (w.dtype == DType::kBF16 && w.low_precision &&
        onednn_matmul_bf16(x, m, static_cast<const uint16_t*>(w.data), n, k, bias, y)) {
      return;
    }
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

inline float gelu_tanh_scalar(float x) {
  const float kAlpha = 0.7978845608028654f;  // sqrt(2 / pi)
  return 0.5f * x * (1.0f + std::tanh(kAlpha * (x + 0.044715f * x * x * x)));
}

constexpr int64_t kTanhGrain = 4096;     // elements per chunk for ops calling std::tanh
constexpr int64_t kStreamGrain = 65536;  // elements per chunk for memory-bound ops

// x, y: [n] (may alias).
void gelu_tanh(const float* x, float* y, int64_t n) {
  parallel_for(n, kTanhGrain, [&](int64_t b, int64_t e) {
    for (int64_t i = b; i < e; ++i) y[i] = gelu_tanh_scalar(x[i]);
  });
}

// gate, up, y: [n]; y may alias either input.
void gelu_tanh_mul(const float* gate, const float* up, float* y, int64_t n) {
  parallel_for(n, kTanhGrain, [&](int64_t b, int64_t e) {
    for (int64_t i = b; i < e; ++i) y[i] = gelu_tanh_scalar(gate[i]) * up[i];
  });
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
    for (int64_t i = b; i < e; ++i) x[i] = cap * std::tanh(x[i] / cap);
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

// ---------------------------------------------------------------------------------------
// Attention: parallel over (query, head); per chunk one float scores buffer of S floats.

// a, b: [d]. 16 lanes, then 8, then scalars (head dims 72 and 24 leave 8).
inline float dot(const float* a, const float* b, int64_t d) {
  typedef float f32x8 __attribute__((vector_size(32)));
  f32x16 acc = {};
  int64_t i = 0;
  for (; i + kLanes <= d; i += kLanes) acc += load_f32(a + i) * load_f32(b + i);
  float tail = 0.0f;
  if (i + 8 <= d) {
    f32x8 va, vb;
    std::memcpy(&va, a + i, sizeof(va));
    std::memcpy(&vb, b + i, sizeof(vb));
    va *= vb;
    tail = ((va[0] + va[4]) + (va[2] + va[6])) + ((va[1] + va[5]) + (va[3] + va[7]));
    i += 8;
  }
  for (; i < d; ++i) tail += a[i] * b[i];
  return hsum(acc) + tail;
}

// q: [T, q_stride], k, v: [S, kv_stride], out: [T, out_stride]. A query that sees no key
// gets zeros. Visible keys form one interval [lo, hi) per query.
void attention(const AttentionParams& p, const float* q, const float* k, const float* v,
               float* out) {
  const int64_t hq = p.num_heads, dd = p.head_dim, s_len = p.num_keys;
  const int64_t group = hq / p.num_kv_heads;
  const int64_t grain = std::max<int64_t>(1, 16384 / std::max<int64_t>(1, s_len * dd));
  parallel_for(p.num_queries * hq, grain, [&](int64_t b, int64_t e) {
    std::vector<float> scores(static_cast<size_t>(std::max<int64_t>(1, s_len)));
    for (int64_t item = b; item < e; ++item) {
      const int64_t t = item / hq, h = item % hq, kvh = h / group;
      const int64_t i = p.query_offset + t;
      int64_t lo = 0, hi = s_len;
      if (p.causal) hi = std::min(s_len, std::max(p.prefix_len, i + 1));
      if (p.sliding_window > 0) lo = std::max<int64_t>(0, i - p.sliding_window + 1);
      float* o = out + t * p.out_stride + h * dd;
      std::fill(o, o + dd, 0.0f);
      if (lo >= hi) continue;
      const float* qh = q + t * p.q_stride + h * dd;
      float max_score = -std::numeric_limits<float>::infinity();
      for (int64_t j = lo; j < hi; ++j) {
        float s = dot(qh, k + j * p.kv_stride + kvh * dd, dd) * p.scale;
        if (p.softcap > 0.0f) s = p.softcap * std::tanh(s / p.softcap);
        scores[j - lo] = s;
        max_score = std::max(max_score, s);
      }
      float sum = 0.0f;
      for (int64_t j = lo; j < hi; ++j) {
        const float e_j = std::exp(scores[j - lo] - max_score);
        scores[j - lo] = e_j;
        sum += e_j;
      }
      for (int64_t j = lo; j < hi; ++j) {
        const float pj = scores[j - lo];
        const float* vj = v + j * p.kv_stride + kvh * dd;
        for (int64_t d = 0; d < dd; ++d) o[d] += pj * vj[d];
      }
      for (int64_t d = 0; d < dd; ++d) o[d] /= sum;
    }
  });
}

}  // namespace

const KernelTable& fast_kernels() {
  static const KernelTable table = {
      "fast", matmul,  layer_norm, rms_norm, gelu_tanh, gelu_tanh_mul,
      rope,   softcap, add,        scale,    attention,
  };
  return table;
}

}  // namespace pg::kernels
