// Prefill product for q8 / q4 weights: int8 x int8 on AVX512-VNNI (vpdpbusd), with the
// scales of every block of 32 (x's shift, the weight's float) applied to its exact int32
// sum.
//
// vpdpbusd multiplies unsigned by signed bytes. The activations take the unsigned side,
// packed as u = q_x + 128, and the weights the signed one: each panel of weight rows is
// copied as its codes (q8: as stored; q4: code - 8) in block order, and the 128 *
// sum(q_w) that the offset adds per block is subtracted by starting each block's sum at
// -128 * sum_{k in b} q_w[n, k], computed in the same pass over the panel (8 vpdpbusd
// per row and group of 16 blocks). (The weights took the unsigned side before, copied as
// q + 128, and the sum started at -128 * sum(q_x): then x was vpdpbusd's signed operand,
// which it may read from memory, and GCC 12 did for every product of a 48-row tile; the
// unsigned operand must be a register.)
//
// Within a row, the activations' steps differ by powers of two: row i's block b is
// quantized with step u_i 2^s_ib, s_ib in [0, 12], u_i the row's unit (its largest
// block's amax / 127, over 2^12; quant_gemm.h). So the x side of a block's scaling is a
// shift of its exact int32 sum (vpsllvd, on an integer pipe), and only the weight's scale
// needs a float operation per block: one fused multiply-add, where a float scale per
// block of x took a multiply and the fused multiply-add, both on the pipes vpdpbusd runs
// on (measured alone: the tile 12-14% faster). The row's unit multiplies its sums once,
// at the end. Steps are at most twice amax / 127 for blocks within 2^-12 of their row's
// largest (the golden models' int8 logit errors moved within their noise: README "Speed").
//
// Register tiles: 48 rows of x (three vectors of 16 lanes, one row per lane) by 4 weight
// rows (columns of y), or 32 by 6, or 16 by 12: 12 accumulators each. Per 4 columns of
// K, a lane holds 4 bytes of its row of x and every weight row's 4 bytes are broadcast.
// The rows are split into as many tiles of 48 as leave a rest of whole tiles of 32, so
// only the last tile holds padded rows (PaliGemma's 266 prompt rows: 5 x 48 + 32, where
// 8 x 32 + a 16-row rest spent 9.5% of a one-core product on the rest's 10 rows: 3.0%
// faster with 2 threads, measured by alternating in one process). Packed x, per vector of
// 16 rows:
//   xq [nb][8 steps][16 lanes][4 bytes]   (u8, q_x + 128; rows past m are 128)
//   xs [nb][16]  s_ib
// and per row: u_i and 1 / u_i.
//
// The w8a8 products (row-scaled q8: every block of a row has the row's scale) take the
// same tiles without the per-block scaling (tile_row_scaled): x is quantized per row (one
// scale, no shifts) and packed in the order of the weights' stored words, the weight rows
// are read in place (no panel copy; a pass over each row's codes gives its start, -128
// times their sum), each accumulator sums its whole row in int32, and each output is
// scaled once, as gemm_w8a8_reference (w8a8.h) computes it, bit for bit.
#include "kernels/quant_gemm.h"

#include <immintrin.h>

#include <algorithm>
#include <cstring>
#include <vector>

#include "base/parallel.h"
#include "kernels/elementwise.h"
#include "kernels/lane_masks.h"
#include "kernels/segments.h"
#include "kernels/tile_store.h"
#include "kernels/transpose.h"
#include "kernels/w8a8.h"

namespace pg::kernels {

#if defined(__AVX512VNNI__) && defined(__AVX512BW__)
namespace {

constexpr int64_t B = kQuantBlock;
constexpr int64_t kLanes = 16;               // rows of x per vector (one per lane)
constexpr int64_t kBlockBytes = B * kLanes;  // one block of one packed vector of rows
constexpr int kMaxTileVecs = 3;              // vectors of rows per register tile
// Weight rows per register tile of 1, 2 or 3 vectors of rows (12 accumulators each), and
// the columns that panels and the threads' shares come in: a multiple of all of them.
constexpr int64_t kTileCols[kMaxTileVecs + 1] = {0, 12, 6, 4};
constexpr int64_t kColGroup = 12;
// Weight rows copied per panel: about this many bytes, so that a panel (and the next,
// being copied) stays in L2 while every tile of x passes over it.
constexpr int64_t kPanelBytes = 384 << 10;

// Shift of a block's sum at most: |sum_k q_w q_x| <= 32 * 128 * 127 < 2^19, so a sum
// shifted by 12 stays below 2^31.
constexpr int kMaxShift = 12;

struct PackedX {
  int64_t vecs = 0, nb = 0;
  std::vector<uint8_t> q;       // [vecs][nb][8][16][4]
  std::vector<int32_t> shift;   // [vecs][nb][16]
  std::vector<float> unit;      // [vecs * 16]: each row's (row-scaled products: its scale)
  std::vector<float> inv_unit;  // [vecs * 16]: 1 / unit
  std::vector<float> amax;      // [vecs][nb][16]: each block's max |x|
};

// ceil(log2(v)) for v >= 0 from its bits (0 gives -127, subnormals -126).
inline __m512i ceil_log2(__m512 v) {
  const __m512i bits = _mm512_castps_si512(v);
  const __m512i e = _mm512_sub_epi32(_mm512_srli_epi32(bits, 23), _mm512_set1_epi32(127));
  const __mmask16 fraction = _mm512_test_epi32_mask(bits, _mm512_set1_epi32(0x7fffff));
  return _mm512_mask_add_epi32(e, fraction, e, _mm512_set1_epi32(1));
}

// 2^e for e in [-126, 127].
inline __m512 pow2(__m512i e) {
  return _mm512_castsi512_ps(_mm512_slli_epi32(_mm512_add_epi32(e, _mm512_set1_epi32(127)), 23));
}

// Load masks of block b's first and second 16 values (a partial last block: fewer).
struct BlockMasks {
  __mmask16 lo, hi;
};
inline BlockMasks block_masks(int64_t k, int64_t b) {
  const int64_t n = std::min(B, k - b * B);  // valid values in this block
  return {first_n16(n), first_n16(n - 16)};
}

// Lane r: max |x| over block b of row r0 + r (rows at or past m count as zero), from a tree
// of 128-bit and in-lane shuffles over the 16 rows' partial maxima.
__m512 block_amax(const float* x, int64_t m, int64_t k, int64_t r0, int64_t b) {
  const auto [m0, m1] = block_masks(k, b);
  const int64_t rows = std::min<int64_t>(16, m - r0);
  __m512 a[16];
  for (int64_t r = 0; r < 16; ++r) {
    __m512 lo = _mm512_setzero_ps(), hi = _mm512_setzero_ps();
    if (r < rows) {
      const float* row = x + (r0 + r) * k + b * B;
      lo = _mm512_maskz_loadu_ps(m0, row);
      hi = _mm512_maskz_loadu_ps(m1, row + 16);
    }
    a[r] = _mm512_max_ps(_mm512_abs_ps(lo), _mm512_abs_ps(hi));
  }
  __m512 t[8], u[4], v[2];
  for (int i = 0; i < 8; ++i) {  // 128-bit lanes 0-1: row 2i's partial maxima; 2-3: 2i + 1's
    t[i] = _mm512_max_ps(_mm512_shuffle_f32x4(a[2 * i], a[2 * i + 1], 0x44),
                         _mm512_shuffle_f32x4(a[2 * i], a[2 * i + 1], 0xee));
  }
  for (int i = 0; i < 4; ++i) {  // 128-bit lane j: row 4i + j's
    u[i] = _mm512_max_ps(_mm512_shuffle_f32x4(t[2 * i], t[2 * i + 1], 0x88),
                         _mm512_shuffle_f32x4(t[2 * i], t[2 * i + 1], 0xdd));
  }
  for (int i = 0; i < 2; ++i) {  // lane j, elements 0-1: row 8i + j's; 2-3: row 8i + 4 + j's
    v[i] = _mm512_max_ps(_mm512_shuffle_ps(u[2 * i], u[2 * i + 1], 0x44),
                         _mm512_shuffle_ps(u[2 * i], u[2 * i + 1], 0xee));
  }
  // Element 4j + e: row 4e + j's maximum; into row order.
  const __m512 by_lane =
      _mm512_max_ps(_mm512_shuffle_ps(v[0], v[1], 0x88), _mm512_shuffle_ps(v[0], v[1], 0xdd));
  const __m512i order = _mm512_set_epi32(15, 11, 7, 3, 14, 10, 6, 2, 13, 9, 5, 1, 12, 8, 4, 0);
  return _mm512_permutexvar_ps(order, by_lane);
}

// Rows [r0, r0 + 16): every block's amax, and the row's unit: its largest block's step
// (max |x| / 127, at least 2^-100) divided by 2^kMaxShift.
void row_units(const float* x, int64_t m, int64_t k, int64_t r0, PackedX& p) {
  float* amax = p.amax.data() + (r0 / 16) * p.nb * 16;
  __m512 row_max = _mm512_setzero_ps();
  for (int64_t b = 0; b < p.nb; ++b) {
    const __m512 a = block_amax(x, m, k, r0, b);
    _mm512_storeu_ps(amax + b * 16, a);
    row_max = _mm512_max_ps(row_max, a);
  }
  const __m512 step =
      _mm512_max_ps(_mm512_div_ps(row_max, _mm512_set1_ps(127.0f)), _mm512_set1_ps(0x1p-100f));
  const __m512 unit = _mm512_mul_ps(step, _mm512_set1_ps(1.0f / (1 << kMaxShift)));
  _mm512_storeu_ps(p.unit.data() + r0, unit);
  _mm512_storeu_ps(p.inv_unit.data() + r0, _mm512_div_ps(_mm512_set1_ps(1.0f), unit));
}

// Rows [r0, r0 + 16) of x (r0 a multiple of 16; rows at or past m count as zero), block b,
// into their vector of the packed tile: the shift s, the least in [0, kMaxShift] for which
// amax / (unit 2^s) <= 127, and the codes q = round-to-nearest-even(x (1 / unit) 2^-s) as
// unsigned q + 128 (4 to a dword, as the tile reads them, transposed into lanes).
void pack_group(const float* x, int64_t m, int64_t k, int64_t r0, int64_t b, PackedX& p) {
  const auto [m0, m1] = block_masks(k, b);
  const int64_t rows = std::min<int64_t>(16, m - r0);
  const __m512 inv_unit = _mm512_loadu_ps(p.inv_unit.data() + r0);
  const __m512 amax = _mm512_loadu_ps(p.amax.data() + ((r0 / 16) * p.nb + b) * 16);
  const __m512 t = _mm512_div_ps(_mm512_mul_ps(amax, inv_unit), _mm512_set1_ps(127.0f));
  const __m512i shift = _mm512_min_epi32(_mm512_max_epi32(ceil_log2(t), _mm512_setzero_si512()),
                                         _mm512_set1_epi32(kMaxShift));
  const __m512 inv = _mm512_mul_ps(inv_unit, pow2(_mm512_sub_epi32(_mm512_setzero_si512(), shift)));
  // Codes: row r's 32 bytes in dwords 0-7 of q[r], then transposed: q[step] lane r.
  const __m512i lo_q = _mm512_set1_epi32(-127), hi_q = _mm512_set1_epi32(127);
  __m512i q[16];
  for (int64_t r = 0; r < 16; ++r) {
    if (r >= rows) {
      q[r] = _mm512_setzero_si512();
      continue;
    }
    const float* row = x + (r0 + r) * k + b * B;
    const __m512 lo = _mm512_maskz_loadu_ps(m0, row), hi = _mm512_maskz_loadu_ps(m1, row + 16);
    const __m512 s = _mm512_permutexvar_ps(_mm512_set1_epi32(static_cast<int>(r)), inv);
    // (cvtps rounds to nearest even; NaN becomes INT_MIN, clamped to -127.)
    const __m512i q0 =
        _mm512_min_epi32(_mm512_max_epi32(_mm512_cvtps_epi32(_mm512_mul_ps(lo, s)), lo_q), hi_q);
    const __m512i q1 =
        _mm512_min_epi32(_mm512_max_epi32(_mm512_cvtps_epi32(_mm512_mul_ps(hi, s)), lo_q), hi_q);
    const __m256i bytes = _mm256_inserti128_si256(_mm256_castsi128_si256(_mm512_cvtepi32_epi8(q0)),
                                                  _mm512_cvtepi32_epi8(q1), 1);
    q[r] = _mm512_zextsi256_si512(bytes);
  }
  transpose16(q);
  const int64_t blk = (r0 / kLanes) * p.nb + b;
  uint8_t* dst = p.q.data() + blk * kBlockBytes;
  const __m512i offset = _mm512_set1_epi8(static_cast<char>(0x80));  // q + 128, mod 256
  for (int64_t step = 0; step < B / 4; ++step)
    _mm512_storeu_si512(dst + step * 64, _mm512_xor_si512(q[step], offset));
  _mm512_storeu_si512(p.shift.data() + blk * kLanes, shift);
}

// Rows [16 i, 16 i + 16) of x (rows at or past m count as zeros) quantized per row, as
// quantize_rows_int8 does it (their scales already in p.unit, the factors in inv), into
// their vector of the packed tile as unsigned q + 128: per 64 columns, each row's codes
// as one 64-byte register (4 conversions of 16), a 16 x 16 transpose of dwords, row r's 4
// bytes of a step in lane r. The steps go in the order of the weights' stored words (the
// q8 groups, tensor.h), so that the tiles read weight rows in place: a row's sum is the
// same in any order of K that both sides share. (Straight from x: quantizing into rows of
// codes first and transposing them, the two took 7-8% of a product's time at 267 rows.)
void pack_rows_quantized(const float* x, int64_t m, int64_t k, int64_t i, const float* inv,
                         PackedX& p) {
  const int64_t kp = p.nb * B, rows = std::min<int64_t>(16, m - 16 * i);
  uint8_t* dst = p.q.data() + i * p.nb * kBlockBytes;
  const __m512i offset = _mm512_set1_epi8(static_cast<char>(0x80));  // q + 128, mod 256
  for (int64_t c0 = 0; c0 < kp; c0 += 64) {
    __m512i v[16];
    for (int64_t r = 0; r < 16; ++r) {
      if (r >= rows || inv[r] == 0.0f) {  // (codes 0: a NaN times 0 would not give them)
        v[r] = _mm512_setzero_si512();
        continue;
      }
      const float* row = x + (16 * i + r) * k + c0;
      const __m512 s = _mm512_set1_ps(inv[r]);
      __m128i q[4];
      for (int64_t j = 0; j < 4; ++j) {
        const __mmask16 mask = first_n16(k - c0 - 16 * j);
        q[j] = quantize16(_mm512_maskz_loadu_ps(mask, row + 16 * j), s);
      }
      const __m256i lo = _mm256_inserti128_si256(_mm256_castsi128_si256(q[0]), q[1], 1);
      const __m256i hi = _mm256_inserti128_si256(_mm256_castsi128_si256(q[2]), q[3], 1);
      v[r] = _mm512_inserti64x4(_mm512_castsi256_si512(lo), hi, 1);
    }
    transpose16(v);
    const int64_t steps = std::min<int64_t>(16, (kp - c0) / 4);  // (8 in an odd nb's last)
    for (int64_t s = 0; s < steps; ++s) {
      const int64_t word = c0 / 4 + s;  // of the row: block word / 8, its bytes 4 (word % 8)..
      const int64_t slot = group_byte(p.nb, B, word / 8, 4 * (word % 8)) / 4;
      _mm512_storeu_si512(dst + slot * 64, _mm512_xor_si512(v[s], offset));
    }
  }
}

// Weight rows [r0, r0 + rows) as signed codes, each block's 32 in order ([rows][nb * 32];
// a partial last block's padding, q8 0 or q4 code 8, becomes 0), and per row and block
// -128 * the sum of its codes (cw [rows][nb], the start of the block's sum in the tile).
// In each run of a group (tensor.h), lane j holds 4 bytes of block j: q8's runs 0-7 are
// the blocks' bytes 0-31; q4's four runs hold codes 0-15 (low nibbles) and 16-31 (high),
// less 8. Summed against bytes of 1 they give the blocks' sums lane by lane. Transposed:
// per 128-bit lane k, a 4 x 4 transpose of dwords (unpacks) of bytes 0-15 makes lo[q]'s
// lane k block 4k + q's first half, and of bytes 16-31 hi[q]'s its second; a 4 x 4
// transpose of 128-bit lanes over (lo[q], hi[q], lo[q + 1], hi[q + 1]) then makes lane k's
// blocks 4k + q and 4k + q + 1 one 64-byte store. (Reading q8 rows in place, in their
// groups, instead: measured by alternating in one process, the products with the copy were
// 0.8-2.3% faster at 256 to 266 rows of x and 6.7% at 1024, q4's 2.9%.)
template <bool kQ4>
void copy_rows_of_panel(const uint8_t* base, int64_t row_bytes, int64_t nb, int64_t rows,
                        int8_t* out, int32_t* cw) {
  const int64_t kp = nb * B;
  constexpr int64_t kBlockBytesStored = kQ4 ? B / 2 : B;
  const __m512i nibble = _mm512_set1_epi8(0x0f), eight = _mm512_set1_epi8(8);
  const __m512i ones = _mm512_set1_epi8(1);
  auto transpose = [](const __m512i* v, __m512i* t) {  // t[q] lane k: 16 bytes of block 4k + q
    const __m512i a0 = _mm512_unpacklo_epi32(v[0], v[1]), a1 = _mm512_unpackhi_epi32(v[0], v[1]);
    const __m512i a2 = _mm512_unpacklo_epi32(v[2], v[3]), a3 = _mm512_unpackhi_epi32(v[2], v[3]);
    t[0] = _mm512_unpacklo_epi64(a0, a2);
    t[1] = _mm512_unpackhi_epi64(a0, a2);
    t[2] = _mm512_unpacklo_epi64(a1, a3);
    t[3] = _mm512_unpackhi_epi64(a1, a3);
  };
  for (int64_t r = 0; r < rows; ++r) {
    const uint8_t* src = base + r * row_bytes;
    int8_t* dst = out + r * kp;
    for (int64_t g0 = 0; g0 < nb; g0 += kQuantGroup) {
      const int64_t n = std::min(kQuantGroup, nb - g0);  // blocks in the group (runs of n dwords)
      const __mmask16 lanes = first_n16(n);
      const uint8_t* group = src + g0 * kBlockBytesStored;
      __m512i lo[4], hi[4], tl[4], th[4];  // bytes 0-15 and 16-31 of the blocks
      __m512i sum_lo = _mm512_setzero_si512(), sum_hi = _mm512_setzero_si512();
#pragma GCC unroll 4
      for (int64_t t = 0; t < 4; ++t) {
        const __m512i v = _mm512_maskz_loadu_epi32(lanes, group + t * 4 * n);
        if constexpr (kQ4) {
          lo[t] = _mm512_sub_epi8(_mm512_and_si512(v, nibble), eight);
          hi[t] = _mm512_sub_epi8(_mm512_and_si512(_mm512_srli_epi16(v, 4), nibble), eight);
        } else {
          lo[t] = v;
          hi[t] = _mm512_maskz_loadu_epi32(lanes, group + (4 + t) * 4 * n);
        }
        sum_lo = _mm512_dpbusd_epi32(sum_lo, ones, lo[t]);
        sum_hi = _mm512_dpbusd_epi32(sum_hi, ones, hi[t]);
      }
      const __m512i sum = _mm512_add_epi32(sum_lo, sum_hi);  // lane j: block g0 + j's codes
      _mm512_mask_storeu_epi32(cw + r * nb + g0, lanes,
                               _mm512_sub_epi32(_mm512_setzero_si512(), _mm512_slli_epi32(sum, 7)));
      transpose(lo, tl);
      transpose(hi, th);
#pragma GCC unroll 2
      for (int64_t q = 0; q < 4; q += 2) {
        const __m512i a_lo = _mm512_shuffle_i64x2(tl[q], th[q], 0x44);  // lanes 0, 1 of each
        const __m512i a_hi = _mm512_shuffle_i64x2(tl[q], th[q], 0xee);  // lanes 2, 3
        const __m512i b_lo = _mm512_shuffle_i64x2(tl[q + 1], th[q + 1], 0x44);
        const __m512i b_hi = _mm512_shuffle_i64x2(tl[q + 1], th[q + 1], 0xee);
        const __m512i pair[4] = {_mm512_shuffle_i64x2(a_lo, b_lo, 0x88),   // blocks q, q + 1
                                 _mm512_shuffle_i64x2(a_lo, b_lo, 0xdd),   // 4 + q, 5 + q
                                 _mm512_shuffle_i64x2(a_hi, b_hi, 0x88),   // 8 + q, 9 + q
                                 _mm512_shuffle_i64x2(a_hi, b_hi, 0xdd)};  // 12 + q, 13 + q
#pragma GCC unroll 4
        for (int64_t k = 0; k < 4; ++k) {
          const int64_t first = 4 * k + q;  // of the group
          const auto halves =
              static_cast<__mmask8>((first < n ? 0x0f : 0) | (first + 1 < n ? 0xf0 : 0));
          _mm512_mask_storeu_epi64(dst + (g0 + first) * B, halves, pair[k]);
        }
      }
    }
  }
}

// Row-scaled weight rows [r0, r0 + rows) of w (q8): the start of each row's sum in the
// tile, -128 times the sum of its codes (cw [rows]; the padding past K is code 0).
void row_starts(const MatrixView& w, int64_t r0, int64_t rows, int32_t* cw) {
  const int64_t row_bytes = w.row_bytes();  // a multiple of 32
  const __m512i ones = _mm512_set1_epi8(1);
  for (int64_t r = 0; r < rows; ++r) {
    const auto* row = static_cast<const uint8_t*>(w.data) + (r0 + r) * row_bytes;
    __m512i sum = _mm512_setzero_si512();
    for (int64_t c = 0; c < row_bytes; c += 64) {
      const __mmask64 mask = row_bytes - c >= 64 ? ~__mmask64{0} : (__mmask64{1} << 32) - 1;
      sum = _mm512_dpbusd_epi32(sum, ones, _mm512_maskz_loadu_epi8(mask, row + c));
    }
    cw[r] = -128 * _mm512_reduce_add_epi32(sum);
  }
}

void copy_panel(const MatrixView& w, int64_t r0, int64_t rows, int8_t* out, int32_t* cw) {
  const int64_t nb = quant_blocks(w.cols), row_bytes = w.row_bytes();
  const auto* base = static_cast<const uint8_t*>(w.data) + r0 * row_bytes;
  if (w.dtype == DType::kU8) {
    copy_rows_of_panel<true>(base, row_bytes, nb, rows, out, cw);
  } else {
    copy_rows_of_panel<false>(base, row_bytes, nb, rows, out, cw);
  }
}

// One tile: MV vectors of 16 packed rows of x from vector t on times NR panel rows (rows
// ldw bytes apart, blocks in order; their scales ws[j * nb + b], their blocks' starting sums
// cw[j * nb + b]), into y's rows (stride N: the caller's staging buffer) from tile row 0
// to `rows`, columns 0 to NR, plus bias (or null). NR * MV = 12 accumulators, as many as
// cover vpdpbusd's latency.
template <int NR, int MV>
void tile(const PackedX& p, int64_t t, const int8_t* wp, int64_t ldw, const int32_t* cw,
          const float* ws, float* y, int64_t N, int64_t rows, const float* bias) {
  static_assert(MV >= 1 && MV <= kMaxTileVecs);
  const int64_t nb = p.nb;
  const uint8_t* xq = p.q.data() + t * nb * kBlockBytes;  // vector t + v: + v * nb * kBlockBytes
  const int32_t* xs = p.shift.data() + t * nb * kLanes;
  __m512 f[NR][MV];
  for (int j = 0; j < NR; ++j)
    for (int v = 0; v < MV; ++v) f[j][v] = _mm512_setzero_ps();
  for (int64_t b = 0; b < nb; ++b) {
    __m512i a[NR][MV];
    for (int j = 0; j < NR; ++j) {
      const __m512i c = _mm512_set1_epi32(cw[j * nb + b]);
      for (int v = 0; v < MV; ++v) a[j][v] = c;
    }
    const uint8_t* xb = xq + b * kBlockBytes;
    const int8_t* wb = wp + b * B;
#pragma GCC unroll 8
    for (int64_t step = 0; step < B / 4; ++step) {
      __m512i xv[MV];
      for (int v = 0; v < MV; ++v)
        xv[v] = _mm512_loadu_si512(xb + v * nb * kBlockBytes + step * 64);
      for (int j = 0; j < NR; ++j) {
        int32_t four;
        std::memcpy(&four, wb + j * ldw + step * 4, 4);
        const __m512i wv = _mm512_set1_epi32(four);
        for (int v = 0; v < MV; ++v) a[j][v] = _mm512_dpbusd_epi32(a[j][v], xv[v], wv);
      }
    }
    __m512i shift[MV];
    for (int v = 0; v < MV; ++v) shift[v] = _mm512_loadu_si512(xs + (v * nb + b) * kLanes);
    for (int j = 0; j < NR; ++j) {
      const __m512 sw = _mm512_set1_ps(ws[j * nb + b]);
      for (int v = 0; v < MV; ++v) {
        const __m512 sum = _mm512_cvtepi32_ps(_mm512_sllv_epi32(a[j][v], shift[v]));
        f[j][v] = _mm512_fmadd_ps(sum, sw, f[j][v]);
      }
    }
  }
  for (int v = 0; v < MV; ++v) {  // each row's unit
    const __m512 unit = _mm512_loadu_ps(p.unit.data() + (t + v) * kLanes);
    for (int j = 0; j < NR; ++j) f[j][v] = _mm512_mul_ps(f[j][v], unit);
  }
  constexpr int kLo = NR > 8 ? NR / 2 : NR, kHi = NR - kLo;  // store_columns takes <= 8
  for (int v = 0; v < MV && 16 * v < rows; ++v) {
    const int64_t lanes = std::min<int64_t>(16, rows - 16 * v);
    __m512 lo[kLo];
    for (int j = 0; j < kLo; ++j) lo[j] = f[j][v];
    store_columns<kLo>(lo, y + 16 * v * N, N, lanes, bias);
    if constexpr (kHi > 0) {
      __m512 hi[kHi];
      for (int j = 0; j < kHi; ++j) hi[j] = f[kLo + j][v];
      store_columns<kHi>(hi, y + 16 * v * N + kLo, N, lanes,
                         bias != nullptr ? bias + kLo : nullptr);
    }
  }
}

// The same tile for row-scaled weights (w8a8: every block of weight row j has the scale
// ws[j * nb]), read in place (rows ldw bytes apart, their words as stored) with x packed
// per row in the same order (p.unit: each row's scale, no shifts): the sums run exactly
// in int32 over the whole row, from cw[j] (-128 times the row's codes' sum), and each
// output is scaled once, y = fma(float(s), w_scale * x_scale, bias), as
// gemm_w8a8_reference computes it. (|s| <= 127^2 K < 2^31 for the K that w8a8_formats
// takes; the partial sums wrap in vpdpbusd and come back.)
template <int NR, int MV>
void tile_row_scaled(const PackedX& p, int64_t t, const int8_t* wp, int64_t ldw, const int32_t* cw,
                     const float* ws, float* y, int64_t N, int64_t rows, const float* bias) {
  static_assert(MV >= 1 && MV <= kMaxTileVecs);
  const int64_t nb = p.nb, steps = nb * (B / 4);
  const uint8_t* xq = p.q.data() + t * nb * kBlockBytes;  // vector t + v: + v * nb * kBlockBytes
  __m512i a[NR][MV];
  for (int j = 0; j < NR; ++j) {
    const __m512i c = _mm512_set1_epi32(cw[j]);
    for (int v = 0; v < MV; ++v) a[j][v] = c;
  }
#pragma GCC unroll 8
  for (int64_t step = 0; step < steps; ++step) {
    __m512i xv[MV];
    for (int v = 0; v < MV; ++v) xv[v] = _mm512_loadu_si512(xq + v * nb * kBlockBytes + step * 64);
    for (int j = 0; j < NR; ++j) {
      int32_t four;
      std::memcpy(&four, wp + j * ldw + step * 4, 4);
      const __m512i wv = _mm512_set1_epi32(four);
      for (int v = 0; v < MV; ++v) a[j][v] = _mm512_dpbusd_epi32(a[j][v], xv[v], wv);
    }
  }
  constexpr int kLo = NR > 8 ? NR / 2 : NR, kHi = NR - kLo;  // store_columns takes <= 8
  for (int v = 0; v < MV && 16 * v < rows; ++v) {
    const __m512 x_scale = _mm512_loadu_ps(p.unit.data() + (t + v) * kLanes);
    __m512 f[NR];
    for (int j = 0; j < NR; ++j) {
      const __m512 scale = _mm512_mul_ps(_mm512_set1_ps(ws[j * nb]), x_scale);
      const __m512 b = bias != nullptr ? _mm512_set1_ps(bias[j]) : _mm512_setzero_ps();
      f[j] = _mm512_fmadd_ps(_mm512_cvtepi32_ps(a[j][v]), scale, b);
    }
    const int64_t lanes = std::min<int64_t>(16, rows - 16 * v);
    __m512 lo[kLo];
    for (int j = 0; j < kLo; ++j) lo[j] = f[j];
    store_columns<kLo>(lo, y + 16 * v * N, N, lanes, nullptr);
    if constexpr (kHi > 0) {
      __m512 hi[kHi];
      for (int j = 0; j < kHi; ++j) hi[j] = f[kLo + j];
      store_columns<kHi>(hi, y + 16 * v * N + kLo, N, lanes, nullptr);
    }
  }
}

using TileFn = void (*)(const PackedX&, int64_t, const int8_t*, int64_t, const int32_t*,
                        const float*, float*, int64_t, int64_t, const float*);
// kTiles[vecs][columns]
constexpr TileFn kTiles[kMaxTileVecs + 1][kTileCols[1] + 1] = {
    {},
    {nullptr, tile<1, 1>, tile<2, 1>, tile<3, 1>, tile<4, 1>, tile<5, 1>, tile<6, 1>, tile<7, 1>,
     tile<8, 1>, tile<9, 1>, tile<10, 1>, tile<11, 1>, tile<12, 1>},
    {nullptr, tile<1, 2>, tile<2, 2>, tile<3, 2>, tile<4, 2>, tile<5, 2>, tile<6, 2>},
    {nullptr, tile<1, 3>, tile<2, 3>, tile<3, 3>, tile<4, 3>}};
constexpr TileFn kRowScaledTiles[kMaxTileVecs + 1][kTileCols[1] + 1] = {
    {},
    {nullptr, tile_row_scaled<1, 1>, tile_row_scaled<2, 1>, tile_row_scaled<3, 1>,
     tile_row_scaled<4, 1>, tile_row_scaled<5, 1>, tile_row_scaled<6, 1>, tile_row_scaled<7, 1>,
     tile_row_scaled<8, 1>, tile_row_scaled<9, 1>, tile_row_scaled<10, 1>, tile_row_scaled<11, 1>,
     tile_row_scaled<12, 1>},
    {nullptr, tile_row_scaled<1, 2>, tile_row_scaled<2, 2>, tile_row_scaled<3, 2>,
     tile_row_scaled<4, 2>, tile_row_scaled<5, 2>, tile_row_scaled<6, 2>},
    {nullptr, tile_row_scaled<1, 3>, tile_row_scaled<2, 3>, tile_row_scaled<3, 3>,
     tile_row_scaled<4, 3>}};

// The register tiles covering `vecs` vectors of rows: as many of 3 vectors as leave a
// rest that tiles of 2 cover (a single vector only when that is all there is), so no
// tile but the last holds padded rows.
struct TilePlan {
  int64_t first_vec;
  int vecs;
};
std::vector<TilePlan> plan_tiles(int64_t vecs) {
  if (vecs == 1) return {{0, 1}};
  std::vector<TilePlan> plan;
  int64_t v = 0;
  const int64_t threes = vecs % 3 == 0 ? vecs / 3 : vecs % 3 == 2 ? vecs / 3 : vecs / 3 - 1;
  for (int64_t i = 0; i < threes; ++i, v += 3) plan.push_back({v, 3});
  for (; v < vecs; v += 2) plan.push_back({v, 2});
  return plan;
}

// The products of x with out[0..count) (gelu_up null), or with out[0].w (the MLP's gate,
// count 1) and *gelu_up side by side, out[0].y = gelu_tanh(gate) * up. Row-scaled: the
// w8a8 products (x quantized per row, tile_row_scaled), for matrices w8a8_formats takes.
bool run(const float* x, int64_t m, int64_t K, const MatmulOutput* out, int count,
         const MatrixView* gelu_up, bool row_scaled) {
  if (m <= 0 || K <= 0 || count <= 0) return false;
  if (row_scaled && !w8a8_formats(out, count, K)) return false;
  if (row_scaled && gelu_up != nullptr) {
    const MatmulOutput up{*gelu_up, nullptr, nullptr};
    if (!w8a8_formats(&up, 1, K)) return false;
  }
  for (int i = 0; i < count; ++i) {
    if (out[i].w.dtype != out[0].w.dtype || out[i].w.cols != K) return false;
  }
  if (out[0].w.dtype != DType::kI8 && out[0].w.dtype != DType::kU8) return false;
  if (gelu_up != nullptr &&
      (count != 1 || out[0].bias != nullptr || gelu_up->dtype != out[0].w.dtype ||
       gelu_up->cols != K || gelu_up->rows != out[0].w.rows)) {
    return false;
  }
  const int64_t nb = quant_blocks(K), kp = nb * B;
  // x: [m, K] -> packed vectors of rows (the calling thread's buffers; the pool's threads
  // read them).
  thread_local PackedX p;
  p.nb = nb;
  p.vecs = (m + kLanes - 1) / kLanes;
  const auto blocks = static_cast<size_t>(p.vecs * nb);
  if (p.q.size() < blocks * kBlockBytes) p.q.resize(blocks * kBlockBytes);
  if (p.unit.size() < static_cast<size_t>(p.vecs * kLanes))
    p.unit.resize(static_cast<size_t>(p.vecs * kLanes));
  if (!row_scaled) {  // (the block-scaled packing's shifts, factors and block maxima)
    if (p.shift.size() < blocks * kLanes) p.shift.resize(blocks * kLanes);
    if (p.inv_unit.size() < static_cast<size_t>(p.vecs * kLanes))
      p.inv_unit.resize(static_cast<size_t>(p.vecs * kLanes));
    if (p.amax.size() < static_cast<size_t>(p.vecs * nb * 16))
      p.amax.resize(static_cast<size_t>(p.vecs * nb * 16));
  }
  PackedX& packed = p;
  if (row_scaled) {
    // Each row's scale (into p.unit; rows past m: 0) and factor, then its codes into the
    // packed vectors: a vector at a time where there are a few per thread, each quantized
    // right after its rows' scales (their rows then read again from L2), else the scales
    // over rows and the vectors spread over the threads.
    thread_local std::vector<float> inv;
    if (inv.size() < static_cast<size_t>(p.vecs * kLanes))
      inv.resize(static_cast<size_t>(p.vecs * kLanes));
    float* factors = inv.data();
    auto scales = [&](int64_t r0, int64_t r1) {
      for (int64_t r = r0; r < r1; ++r) {
        const RowQuantization rq = r < m ? quantize_row(x + r * K, K) : RowQuantization{0.0f, 0.0f};
        packed.unit[static_cast<size_t>(r)] = rq.scale;
        factors[r] = rq.inv;
      }
    };
    if (p.vecs >= 4 * num_threads()) {
      parallel_for(p.vecs, 1, [&](int64_t i0, int64_t i1) {
        for (int64_t i = i0; i < i1; ++i) {
          scales(16 * i, 16 * i + 16);
          pack_rows_quantized(x, m, K, i, factors + 16 * i, packed);
        }
      });
    } else {
      parallel_for(p.vecs * kLanes, 8, scales);
      parallel_for(p.vecs, 1, [&](int64_t i0, int64_t i1) {
        for (int64_t i = i0; i < i1; ++i) pack_rows_quantized(x, m, K, i, factors + 16 * i, packed);
      });
    }
  } else if (p.vecs >= 4 * num_threads()) {
    // A vector of rows at a time, its units and then its blocks, so that the second pass
    // over its rows reads them from L2. (Two Gemma layers' products, alternating in one
    // process, four runs: -0.2% to +1.0% as fast (+0.4% over 32 passes) as a pass over all
    // the rows for the units, then one over all the blocks, which the rows of a short x
    // still take, spread over the threads.)
    parallel_for(p.vecs, 1, [&](int64_t i0, int64_t i1) {
      for (int64_t i = i0; i < i1; ++i) {
        row_units(x, m, K, i * 16, packed);
        for (int64_t b = 0; b < nb; ++b) pack_group(x, m, K, i * 16, b, packed);
      }
    });
  } else {
    parallel_for(p.vecs, 1, [&](int64_t i0, int64_t i1) {
      for (int64_t i = i0; i < i1; ++i) row_units(x, m, K, i * 16, packed);
    });
    parallel_for(p.vecs * nb, 8, [&](int64_t i0, int64_t i1) {
      for (int64_t i = i0; i < i1; ++i) pack_group(x, m, K, (i / nb) * 16, i % nb, packed);
    });
  }

  const std::vector<TilePlan> plan = plan_tiles(p.vecs);
  const int mats = gelu_up != nullptr ? 2 : 1;  // matrices walked side by side
  // (Two side by side take half as many rows each, so that their panels fill the same L2.)
  const int64_t panel_groups = std::max<int64_t>(1, kPanelBytes / (kp * kColGroup * mats));
  // Groups [g0, g1) of the matrices ws[0..mats) into y, a panel of weight rows at a time.
  // Every panel but a claim's first is copied (into the other buffer) while the one
  // before it is multiplied: after each tile of x, a share of its rows, whose source
  // lines were fetched into L2 a few at a time before each of that tile's calls.
  // (Copying a whole panel before its tiles, its source fetched a share per tile of x
  // before: the copy waited on memory, 3.7-5.6% of a product's time against 3.2-4.1%; two
  // Gemma layers' products, alternating in one process, 1.7-2.0% faster this way, q8 and
  // q4.) With two matrices (gate, up), a tile's outputs of both are in `stage` when they
  // go into y as gelu_tanh(gate) * up: the two [m, n] products never reach memory.
  auto columns = [&](const MatrixView* const* ws, const float* bias, float* y, int64_t g0,
                     int64_t g1) {
    const int64_t N = ws[0]->rows, row_bytes = ws[0]->row_bytes();
    const int64_t max_rows = panel_groups * kColGroup;
    // Weight rows, blocks in order, [this, the next][matrix], and their blocks' starting sums
    // (row-scaled: no copy, and one start per row).
    thread_local std::vector<int8_t> panel[2][2];
    thread_local std::vector<int32_t> cw[2][2];
    for (int b = 0; b < 2; ++b) {
      for (int i = 0; i < mats; ++i) {
        if (!row_scaled && panel[b][i].size() < static_cast<size_t>(max_rows * kp))
          panel[b][i].resize(static_cast<size_t>(max_rows * kp));
        if (cw[b][i].size() < static_cast<size_t>(max_rows * nb))
          cw[b][i].resize(static_cast<size_t>(max_rows * nb));
      }
    }
    // A tile of x's products with a panel: [<= 48][lds] per matrix, into y's rows after
    // the last of them (tile_store.h; kernels_bench on one core, best of three: q8 266 x
    // 2048 x 2048 552 -> 574 GOP/s, q4 579 -> 592; with no stores at all 581 and 613).
    thread_local std::vector<float> stage[2];
    const auto tiles = static_cast<int64_t>(plan.size());
    int cur = 0;
    bool copied = false;  // panel[cur] holds the panel
    for (int64_t pg0 = g0; pg0 < g1; pg0 += panel_groups) {
      const int64_t r0 = pg0 * kColGroup;
      const int64_t rows = std::min(std::min(g1, pg0 + panel_groups) * kColGroup, N) - r0;
      const int64_t lds = stage_stride(rows);
      for (int i = 0; i < mats; ++i) {
        if (stage[i].size() < static_cast<size_t>(kMaxTileVecs * kLanes * lds))
          stage[i].resize(static_cast<size_t>(kMaxTileVecs * kLanes * lds));
        if (copied) continue;
        if (row_scaled)
          row_starts(*ws[i], r0, rows, cw[cur][i].data());
        else
          copy_panel(*ws[i], r0, rows, panel[cur][i].data(), cw[cur][i].data());
      }
      const int64_t next_r0 = r0 + rows;
      const int64_t next_rows =
          pg0 + panel_groups < g1
              ? std::min(std::min(g1, pg0 + 2 * panel_groups) * kColGroup, N) - next_r0
              : 0;
      const int next = cur ^ 1;
      const int64_t share = (next_rows + tiles - 1) / tiles;  // rows of the next per tile
      for (int64_t t = 0; t < tiles; ++t) {
        const int vecs = plan[t].vecs;
        const int64_t row0 = plan[t].first_vec * kLanes;
        const int64_t rows_t = std::min(vecs * kLanes, m - row0);
        const int64_t cols = kTileCols[vecs];
        const TileFn* row_fns = row_scaled ? kRowScaledTiles[vecs] : kTiles[vecs];
        // The next panel's share [s0, s1): its lines, spread over this tile's calls.
        const int64_t s0 = std::min(next_rows, t * share), s1 = std::min(next_rows, s0 + share);
        const int64_t lines = (s1 - s0) * row_bytes / 64, calls = (rows + cols - 1) / cols;
        const int64_t lines_per_call = (lines + calls - 1) / calls;
        for (int i = 0; i < mats; ++i) {
          const char* src = static_cast<const char*>(ws[i]->data) + (next_r0 + s0) * row_bytes;
          for (int64_t j0 = 0, l = 0; j0 < rows; j0 += cols) {
            for (const int64_t l1 = std::min(lines, l + lines_per_call); l < l1; ++l)
              _mm_prefetch(src + l * 64, _MM_HINT_T1);
            const int64_t nr = std::min(cols, rows - j0);
            // (Row-scaled: the weight rows in place, one start per row.)
            const int8_t* wp = row_scaled
                                   ? static_cast<const int8_t*>(ws[i]->data) + (r0 + j0) * row_bytes
                                   : panel[cur][i].data() + j0 * kp;
            row_fns[nr](packed, plan[t].first_vec, wp, row_scaled ? row_bytes : kp,
                        cw[cur][i].data() + j0 * (row_scaled ? 1 : nb),
                        ws[i]->scales + (r0 + j0) * nb, stage[i].data() + j0, lds, rows_t,
                        bias != nullptr ? bias + r0 + j0 : nullptr);
          }
        }
        if (mats == 1) {
          copy_rows(y + row0 * N + r0, N, stage[0].data(), lds, rows_t, rows);
        } else {
          for (int64_t r = 0; r < rows_t; ++r) {
            gelu_tanh_mul_span(stage[0].data() + r * lds, stage[1].data() + r * lds,
                               y + (row0 + r) * N + r0, rows);
          }
        }
        if (s1 > s0) {
          for (int i = 0; i < mats; ++i) {
            if (row_scaled)
              row_starts(*ws[i], next_r0 + s0, s1 - s0, cw[next][i].data() + s0);
            else
              copy_panel(*ws[i], next_r0 + s0, s1 - s0, panel[next][i].data() + s0 * kp,
                         cw[next][i].data() + s0 * nb);
          }
        }
      }
      copied = next_rows > 0;
      cur = next;
    }
  };
  // Each matrix's columns in groups of kColGroup, claimed by the threads (segments.h: the
  // last ones up to 4 panels at a time); a claim is walked in panels. (bf16_gemm's keep
  // even shares: claiming all of them in chunks, their idle fell from 0.9-1.1% to 0.6%,
  // but 1-3% more time went to the tiles; claiming the last 1/16, two Gemma layers'
  // products were -0.3% to +1.2% as fast, alternating in one process.)
  claim_column_groups(out, count, kColGroup, 4 * panel_groups, [&](int i, int64_t g0, int64_t g1) {
    const MatrixView* ws[2] = {&out[i].w, gelu_up};
    columns(ws, out[i].bias, out[i].y, g0, g1);
  });
  return true;
}

}  // namespace

bool gemm_quantized_vnni(const float* x, int64_t m, int64_t K, const MatmulOutput* out, int count) {
  return run(x, m, K, out, count, nullptr, false);
}

bool gemm_quantized_vnni_gelu_mul(const float* x, int64_t m, const MatrixView& gate,
                                  const MatrixView& up, float* y) {
  const MatmulOutput out{gate, nullptr, y};
  return run(x, m, gate.cols, &out, 1, &up, false);
}

bool w8a8_vnni_run() { return true; }

bool gemm_w8a8_vnni(const float* x, int64_t m, int64_t K, const MatmulOutput* out, int count) {
  return run(x, m, K, out, count, nullptr, true);
}

bool gemm_w8a8_vnni_gelu_mul(const float* x, int64_t m, const MatrixView& gate,
                             const MatrixView& up, float* y) {
  if (up.rows != gate.rows) return false;
  const MatmulOutput out{gate, nullptr, y};
  return run(x, m, gate.cols, &out, 1, &up, true);
}

#else
bool gemm_quantized_vnni(const float*, int64_t, int64_t, const MatmulOutput*, int) { return false; }
bool gemm_quantized_vnni_gelu_mul(const float*, int64_t, const MatrixView&, const MatrixView&,
                                  float*) {
  return false;
}
bool w8a8_vnni_run() { return false; }
bool gemm_w8a8_vnni(const float*, int64_t, int64_t, const MatmulOutput*, int) { return false; }
bool gemm_w8a8_vnni_gelu_mul(const float*, int64_t, const MatrixView&, const MatrixView&, float*) {
  return false;
}
#endif

}  // namespace pg::kernels
