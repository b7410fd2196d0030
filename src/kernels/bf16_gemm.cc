// Prefill product for bf16 weights on AVX512-BF16 (vdpbf16ps).
//
// vdpbf16ps adds, per float32 lane, the products of one pair of bf16 from each operand.
// Here a lane is a row of x and a pair is two neighbouring columns of K: x is packed so
// that one vector holds a pair of K for 16 rows, and a weight row's pair (4 bytes, in
// place in the row-major matrix) is broadcast to all lanes. The weights are never copied:
// a checkpoint's mapped bf16 matrix is multiplied as it lies.
//
// Register tile: up to 48 rows of x (three vectors) by up to 8 weight rows (columns of
// y): 24 accumulators, per pair of K three loads of x and 8 broadcasts of weights.
// Packed x, per tile of 48 rows (a last tile of v <= 3 vectors packs 16 v lanes):
//   xp [pairs][16 v lanes] uint32 (pair p of row lane: bf16 2p low, 2p + 1 high; rows past
//   m are zero)
// Loops, per thread's share of y's columns: K in chunks (so a tile of packed x stays in
// L2), the tiles of x in blocks (a block stays in L3), the columns in panels (a panel of
// weight rows stays in L2 while every tile of the block passes over it), the block's
// tiles, then the panel's groups of 8 columns.
//
// The Gemma MLP (gemm_bf16_avx512_mlp): the gate and up product writes its gated outputs
// straight into the down projection's packed x, a tile's rows and a panel's columns at a
// time while they are in cache, so the [m, F] activations never reach memory as float32
// and are never read back to be packed.
#include "kernels/bf16_gemm.h"

#include <immintrin.h>

#include <algorithm>
#include <cstring>
#include <vector>

#include "base/memory.h"
#include "base/parallel.h"
#include "kernels/elementwise.h"
#include "kernels/lane_masks.h"
#include "kernels/segments.h"
#include "kernels/tile_store.h"
#include "kernels/transpose.h"

namespace pg::kernels {

#if defined(__AVX512BF16__) && defined(__AVX512BW__)
namespace {

constexpr int64_t kVec = 16;      // rows of x per vector
constexpr int64_t kTileVecs = 3;  // vectors per register tile (48 rows)
constexpr int64_t kTileRows = kVec * kTileVecs;
// Weight rows per register tile. (Loads of x must not go through in_register.h's asm:
// with it GCC 12 stores all the accumulators to the stack after every vdpbf16ps.)
constexpr int64_t kTileCols = 8;
constexpr int64_t kChunkPairs = 2048;       // pairs of K per chunk: a tile of x is 384 KiB
constexpr int64_t kPanelBytes = 256 << 10;  // weight bytes per panel (per chunk of K)
// Packed x per block of tiles (per chunk of K): every panel of weights passes over one
// block before the next, so that a long prompt's x (896 px: 4096 image tokens) is read
// from L3, not memory, once per panel.
constexpr int64_t kBlockXBytes = 4 << 20;
// Floats ahead of a block of x being packed that pack_block fetches into L1: the block two
// calls on (the rows of a tile are 16 to 48 streams, too many for the hardware's
// prefetchers; kernels_bench, alternating in one process, 10 repetitions: 266 x 2048 x
// 16384, x in L3, 2.1% faster; 266 x 16 x 16384, the packing alone almost, 29%; K of 1152
// and 2048 unchanged).
constexpr int64_t kPackAhead = 64;

// The tiles of x's m rows: tiles of 48 rows; the rest in a tile of 16 v rows (v = 1, 2,
// 3), except that a rest of one vector after a full tile makes, with it, two tiles of 32
// rows: a tile of one vector has 8 accumulators, too few to cover vdpbf16ps's latency
// (256 image tokens: 4 x 48 + 2 x 32 rows instead of 5 x 48 + 16). Packed x of k = 2
// pairs columns: the tile from row r0 at r0 * pairs, its vectors one after the other for
// each pair ([pairs][vecs][16]).
struct RowTiles {
  int64_t m, full, rest, tiles;
  bool split;
  explicit RowTiles(int64_t rows)
      : m(rows),
        full(rows / kTileRows),
        rest(rows % kTileRows),
        tiles(full + (rest > 0 ? 1 : 0)),
        split(rest > 0 && rest <= kVec && full > 0) {}
  int64_t row0(int64_t t) const {
    return split && t == tiles - 1 ? (full - 1) * kTileRows + 2 * kVec : t * kTileRows;
  }
  int64_t vecs(int64_t t) const {
    if (split && t >= tiles - 2) return 2;
    return std::min<int64_t>(kTileVecs, (m - t * kTileRows + kVec - 1) / kVec);
  }
  // Rows of packed x: m rounded up to a whole vector.
  int64_t padded_rows() const { return tiles == 0 ? 0 : row0(tiles - 1) + vecs(tiles - 1) * kVec; }
  // uint32 words of packed x with `pairs` pairs per row.
  int64_t words(int64_t pairs) const { return padded_rows() * pairs; }
};

// Rows [r0, r0 + 16) of x (rows at or past m read as zero), pairs [p0, p0 + 16) (pairs past
// `pairs` not written; values past k zero), into vector `vec` of the tile at `dst` (a
// tile of `vecs` vectors).
void pack_block(const float* x, int64_t m, int64_t k, int64_t r0, int64_t p0, int64_t pairs,
                uint32_t* dst, int64_t vecs, int64_t vec) {
  __m512i v[16];
  const int64_t k0 = 2 * p0, kn = std::min<int64_t>(32, k - k0);
  const __mmask16 lo = first_n16(kn), hi = first_n16(kn - 16);
  const bool ahead = k0 + kPackAhead + 32 <= k;  // the block kPackAhead on is in the row
  for (int r = 0; r < 16; ++r) {
    if (r0 + r < m) {
      const float* row = x + (r0 + r) * k + k0;
      if (ahead) {
        _mm_prefetch(reinterpret_cast<const char*>(row + kPackAhead), _MM_HINT_T0);
        _mm_prefetch(reinterpret_cast<const char*>(row + kPackAhead + 16), _MM_HINT_T0);
      }
      const __m512 a = _mm512_maskz_loadu_ps(lo, row), b = _mm512_maskz_loadu_ps(hi, row + 16);
      v[r] = reinterpret_cast<__m512i>(_mm512_cvtne2ps_pbh(b, a));
    } else {
      v[r] = _mm512_setzero_si512();
    }
  }
  transpose16(v);
  const int64_t n = std::min<int64_t>(16, pairs - p0);
  for (int64_t j = 0; j < n; ++j) _mm512_storeu_si512(dst + ((p0 + j) * vecs + vec) * kVec, v[j]);
}

// One tile: MV vectors of packed x (pairs [0, pairs), stride MV * 16 uint32 per pair) by
// NR weight rows starting at w (stride k elements, from the chunk's first column), into
// y (stride ldy) rows 0 to `rows`, columns 0 to NR. `first`: the chunk that starts K (y
// gets bias or 0 plus the sums); otherwise the sums are added to y. `pf` (or null): the
// first of `pf_rows` weight rows, `pf_stride` elements apart (same columns), to fetch
// into L2 as the tile passes, a line of each per 16 pairs.
template <int MV, int NR>
void tile(const uint32_t* xp, int64_t pairs, const uint16_t* w, int64_t k, float* y, int64_t ldy,
          int64_t rows, const float* bias, bool first, const uint16_t* pf, int64_t pf_rows,
          int64_t pf_stride) {
  __m512 c[NR][MV];
  for (int j = 0; j < NR; ++j)
    for (int v = 0; v < MV; ++v) c[j][v] = _mm512_setzero_ps();
  for (int64_t p = 0; p < pairs;) {
    if (pf != nullptr) {
      for (int64_t j = 0; j < pf_rows; ++j) _mm_prefetch(pf + j * pf_stride + 2 * p, _MM_HINT_T1);
    }
    for (const int64_t end = std::min(pairs, p + 16); p < end; ++p) {
      __m512bh xv[MV];
      for (int v = 0; v < MV; ++v)
        xv[v] = reinterpret_cast<__m512bh>(_mm512_loadu_si512(xp + (p * MV + v) * kVec));
      const uint16_t* wp = w + 2 * p;
      for (int j = 0; j < NR; ++j) {
        int32_t pair;
        std::memcpy(&pair, wp + j * k, 4);
        const auto wv = reinterpret_cast<__m512bh>(_mm512_set1_epi32(pair));
        for (int v = 0; v < MV; ++v) c[j][v] = _mm512_dpbf16_ps(c[j][v], wv, xv[v]);
      }
    }
  }
  for (int v = 0; v < MV && kVec * v < rows; ++v) {
    __m512 cv[NR];
    for (int j = 0; j < NR; ++j) cv[j] = c[j][v];
    store_columns<NR>(cv, y + kVec * v * ldy, ldy, std::min<int64_t>(kVec, rows - kVec * v), bias,
                      !first);
  }
}

using TileFn = void (*)(const uint32_t*, int64_t, const uint16_t*, int64_t, float*, int64_t,
                        int64_t, const float*, bool, const uint16_t*, int64_t, int64_t);
template <int MV>
constexpr TileFn kRow[kTileCols + 1] = {nullptr,     tile<MV, 1>, tile<MV, 2>,
                                        tile<MV, 3>, tile<MV, 4>, tile<MV, 5>,
                                        tile<MV, 6>, tile<MV, 7>, tile<MV, 8>};
// [MV - 1][NR]
constexpr const TileFn* kTiles[kTileVecs] = {kRow<1>, kRow<2>, kRow<3>};

// The chunks K's `pairs` pairs are walked in: as few as keep each within kChunkPairs.
int64_t k_chunks(int64_t pairs) { return (pairs + kChunkPairs - 1) / kChunkPairs; }

// Whether run() takes these arguments: every matrix bf16 with x's k columns, k even (an
// odd k would read its last pair's high element past a row, the matrix's last row past
// its end: left to the caller's other product); with gelu_up, one output without bias,
// up shaped as gate, and K in one chunk (the gating needs both products whole); packed
// gating (`gated_packed`) also needs gate's rows even.
bool runs(int64_t m, int64_t k, const MatmulOutput* out, int count, const MatrixView* gelu_up,
          bool gated_packed) {
  if (m <= 0 || k <= 0 || k % 2 != 0 || count <= 0) return false;
  for (int i = 0; i < count; ++i) {
    if (out[i].w.dtype != DType::kBF16 || out[i].w.cols != k) return false;
  }
  if (gelu_up != nullptr &&
      (count != 1 || out[0].bias != nullptr || gelu_up->dtype != DType::kBF16 ||
       gelu_up->cols != k || gelu_up->rows != out[0].w.rows || k_chunks(k / 2) != 1)) {
    return false;
  }
  return !gated_packed || (gelu_up != nullptr && out[0].w.rows % 2 == 0);
}

// The products of x with out[0..count) (gelu_up null), or with out[0].w (the MLP's gate,
// count 1) and *gelu_up side by side, out[0].y = gelu_tanh(gate) * up; then, where
// gated_packed is not null, gelu_tanh(gate) * up goes there instead, packed as the x of
// a product with k = gate's rows (RowTiles of m), and out[0].y is not written. With
// x_packed not null, x is already packed there (x itself is not read). Returns false,
// doing nothing, where `runs` does.
bool run(const float* x, int64_t m, int64_t k, const MatmulOutput* out, int count,
         const MatrixView* gelu_up, const uint32_t* x_packed = nullptr,
         uint32_t* gated_packed = nullptr) {
  if (!runs(m, k, out, count, gelu_up, gated_packed != nullptr)) return false;
  const int64_t pairs = k / 2;
  const int64_t chunks = k_chunks(pairs);
  const int64_t chunk_pairs = (pairs + chunks - 1) / chunks;  // near-equal chunks
  const RowTiles row_tiles(m);
  const int64_t tiles = row_tiles.tiles;
  // x: [m, k] -> tiles of [pairs][16 vecs] (the calling thread's buffer; the pool's
  // threads read it). The tile from row r0 starts at r0 * pairs.
  const uint32_t* xp = x_packed;
  if (xp == nullptr) {
    thread_local LineAlignedVector<uint32_t> packed;  // vectors on whole cache lines
    const auto words = static_cast<size_t>(row_tiles.words(pairs));
    if (packed.size() < words) packed.resize(words);
    uint32_t* dst = packed.data();
    // A tile's vectors one after the other for each 16 pairs, so that the lines they
    // share (one pair of every vector) are written while in L1.
    const int64_t pair_blocks = (pairs + 15) / 16;
    parallel_for(tiles * pair_blocks, 8, [&](int64_t b0, int64_t b1) {
      for (int64_t b = b0; b < b1; ++b) {
        const int64_t t = b / pair_blocks, pb = b % pair_blocks, vecs = row_tiles.vecs(t);
        for (int64_t v = 0; v < vecs; ++v) {
          pack_block(x, m, k, row_tiles.row0(t) + v * kVec, pb * 16, pairs,
                     dst + row_tiles.row0(t) * pairs, vecs, v);
        }
      }
    });
    xp = dst;
  }

  const int mats = gelu_up != nullptr ? 2 : 1;  // matrices walked side by side
  // (Each of two keeps a whole panel: two Gemma layers' products, alternating in one
  // process, were 0.3-1.5% faster fused than not with half panels, 1.1% and 2.2% with
  // whole ones.)
  const int64_t panel_groups = std::max<int64_t>(1, kPanelBytes / (chunk_pairs * 4 * kTileCols));
  const int64_t block_tiles = std::max<int64_t>(1, kBlockXBytes / (kTileRows * chunk_pairs * 4));
  // Groups [g0, g1) of the matrices ws[0..mats) [n, k] into y [m, n]; with two (gate, up,
  // K in one chunk), a tile's outputs of both go into y as gelu_tanh(gate) * up.
  auto columns = [&](const uint16_t* const* ws, int64_t n, const float* bias, float* y, int64_t g0,
                     int64_t g1) {
    // A tile's products with a panel are made in `stage` ([kTileRows][width] per matrix,
    // after the first chunk of K starting from y's values) and copied into y's rows after
    // the last (tile_store.h; kernels_bench on one core, best of three: 266 x 2048 x 2048
    // 362 -> 380 GFLOP/s, 266 x 2048 x 16384 358 -> 366).
    thread_local std::vector<float> stage[2];
    for (int64_t c = 0; c < chunks; ++c) {
      const int64_t p0 = c * chunk_pairs, cp = std::min(chunk_pairs, pairs - p0);
      const bool first = c == 0;
      for (int64_t b0 = 0; b0 < tiles; b0 += block_tiles) {
        const int64_t b1 = std::min(tiles, b0 + block_tiles), bt = b1 - b0;
        for (int64_t pg0 = g0; pg0 < g1; pg0 += panel_groups) {
          const int64_t col0 = pg0 * kTileCols;
          const int64_t col1 = std::min(std::min(g1, pg0 + panel_groups) * kTileCols, n);
          // The next panel's weight rows (same chunk), fetched into L2 while this panel is
          // multiplied, spread over the block's tiles of x so that memory is read at an
          // even pace: each group's tile b0 + t fetches rows t, t + bt, ... of its
          // counterpart group there.
          const int64_t next1 = std::min(std::min(g1, pg0 + 2 * panel_groups) * kTileCols, n);
          const int64_t width = col1 - col0;
          const int64_t lds = stage_stride(width);
          for (int i = 0; i < mats; ++i) {
            if (stage[i].size() < static_cast<size_t>(kTileRows * lds))
              stage[i].resize(static_cast<size_t>(kTileRows * lds));
          }
          for (int64_t t = b0; t < b1; ++t) {
            const int64_t r0 = row_tiles.row0(t), vecs = row_tiles.vecs(t);
            const int64_t rows = std::min(vecs * kVec, m - r0);
            const uint32_t* xt = xp + r0 * pairs + p0 * vecs * kVec;
            if (!first) copy_rows(stage[0].data(), lds, y + r0 * n + col0, n, rows, width);
            for (int i = 0; i < mats; ++i) {
              const uint16_t* w = ws[i];
              for (int64_t j0 = col0; j0 < col1; j0 += kTileCols) {
                const int64_t nr = std::min(kTileCols, col1 - j0);
                const int64_t next_rows = std::clamp<int64_t>(next1 - (j0 + width), 0, nr);
                const int64_t pf_rows =
                    next_rows > t - b0 ? (next_rows - (t - b0) + bt - 1) / bt : 0;
                kTiles[vecs - 1][nr](xt, cp, w + j0 * k + 2 * p0, k, stage[i].data() + (j0 - col0),
                                     lds, rows, bias != nullptr ? bias + j0 : nullptr, first,
                                     pf_rows > 0 ? w + (j0 + width + t - b0) * k + 2 * p0 : nullptr,
                                     pf_rows, bt * k);
              }
            }
            if (mats == 1) {
              copy_rows(y + r0 * n + col0, n, stage[0].data(), lds, rows, width);
            } else if (gated_packed == nullptr) {
              for (int64_t r = 0; r < rows; ++r) {
                gelu_tanh_mul_span(stage[0].data() + r * lds, stage[1].data() + r * lds,
                                   y + (r0 + r) * n + col0, width);
              }
            } else {
              // Pairs [col0 / 2, col1 / 2) of the next product's packed x, rows [r0, r0 +
              // rows): each vector's gated rows (in L1) through pack_block, as that
              // product would pack them from y.
              thread_local std::vector<float> gated;  // [16][width]
              if (gated.size() < static_cast<size_t>(kVec * width))
                gated.resize(static_cast<size_t>(kVec * width));
              uint32_t* dst = gated_packed + r0 * (n / 2) + (col0 / 2) * vecs * kVec;
              for (int64_t v = 0; v < vecs; ++v) {
                const int64_t vr = std::min(kVec, rows - v * kVec);  // its rows before m
                for (int64_t r = 0; r < vr; ++r) {
                  gelu_tanh_mul_span(stage[0].data() + (v * kVec + r) * lds,
                                     stage[1].data() + (v * kVec + r) * lds,
                                     gated.data() + r * width, width);
                }
                for (int64_t p0 = 0; p0 < width / 2; p0 += 16)
                  pack_block(gated.data(), vr, width, 0, p0, width / 2, dst, vecs, v);
              }
            }
          }
        }
      }
    }
  };
  // Each matrix's columns in groups of kTileCols, all of them split evenly over the
  // threads; each thread walks its share of each matrix in panels.
  parallel_column_groups(out, count, kTileCols, [&](int i, int64_t g0, int64_t g1) {
    const uint16_t* ws[2] = {
        static_cast<const uint16_t*>(out[i].w.data),
        gelu_up != nullptr ? static_cast<const uint16_t*>(gelu_up->data) : nullptr};
    columns(ws, out[i].w.rows, out[i].bias, out[i].y, g0, g1);
  });
  return true;
}

}  // namespace

bool gemm_bf16_avx512(const float* x, int64_t m, int64_t k, const MatmulOutput* out, int count) {
  return run(x, m, k, out, count, nullptr);
}

bool gemm_bf16_avx512_gelu_mul(const float* x, int64_t m, const MatrixView& gate,
                               const MatrixView& up, float* y) {
  const MatmulOutput out{gate, nullptr, y};
  return run(x, m, gate.cols, &out, 1, &up);
}

bool gemm_bf16_avx512_mlp(const float* x, int64_t m, const MatrixView& gate, const MatrixView& up,
                          const MatrixView& down, float* scratch, float* y) {
  // Both products checked first: once the gating has run, its outputs exist only packed.
  const int64_t n = gate.rows;
  const MatmulOutput gating{gate, nullptr, nullptr}, projection{down, nullptr, y};
  if (!runs(m, gate.cols, &gating, 1, &up, true) || !runs(m, n, &projection, 1, nullptr, false))
    return false;
  // The packed gating in the scratch: its (at most m + 15) rows of n / 2 words fit the
  // m rows of n floats from m = 15 on.
  if (RowTiles(m).words(n / 2) > m * n) return false;
  auto* gated = reinterpret_cast<uint32_t*>(scratch);
  run(x, m, gate.cols, &gating, 1, &up, nullptr, gated);
  run(nullptr, m, n, &projection, 1, nullptr, gated);
  return true;
}

#else
bool gemm_bf16_avx512(const float*, int64_t, int64_t, const MatmulOutput*, int) { return false; }
bool gemm_bf16_avx512_gelu_mul(const float*, int64_t, const MatrixView&, const MatrixView&,
                               float*) {
  return false;
}
bool gemm_bf16_avx512_mlp(const float*, int64_t, const MatrixView&, const MatrixView&,
                          const MatrixView&, float*, float*) {
  return false;
}
#endif

}  // namespace pg::kernels
