// Prefill product for bf16 weights on AMX tiles (tdpbf16ps).
//
// A tile product C[16, 16] += A[16, 32] B[16, 32] takes A as 16 rows of 32 bf16 (64
// bytes each) and B in pairs: B's row p holds, for each of C's 16 columns, the pair of
// bf16 that meets A's columns 2p and 2p + 1. Here A is the weights and B is x: 16 weight
// rows (row-major [n, k] as stored; no layout of our own on disk or held in memory, each
// job copies or dequantizes its rows into tiles on the way), and x packed once per call
// into pairs. C holds 16 outputs (columns of y) by 16 rows of
// x, and is transposed on its way into y.
//
// Tiles: 0-3 accumulators (C[i][j] = tile 2i + j: weight block i, x block j), 4-5 weight
// blocks, 6-7 x blocks: each step of 32 columns of K loads 2 + 2 tiles for 4 products.
// Packed x, per block of 16 rows and step of 32 columns (256 uint32 words, 1 KiB):
//   xp[block][step][pair 16][row 16] (pair p of row r: bf16 2p low, 2p + 1 high; rows past
//   m and columns past k zero)
// Work: the weight rows in blocks of 16, jobs of two blocks claimed by the threads in
// shrinking runs (so that they end together when one runs slower). A job's blocks become
// packed tiles (1 KiB each, zero past the rows and K): bf16 blocks of whole tiles as the
// job's first pair of x's blocks loads them from the weight rows (each tile stored packed
// once loaded); others (quantized, partial) copied or dequantized a row at a time between
// the tile products of the job before it. Each job's steps fetch a later job's rows into
// L2; its products pass over every pair of x's blocks, each pair's stores into y
// (transposes, bias, gating) running between the products of the pair after it.
// Long K goes in chunks and many rows of x in groups (passes), so that a pass's packed x
// stays in L2 (run()). The MLP (gemm_bf16_amx_mlp) stores its gated tiles straight into
// the down projection's packed x.
#include "kernels/amx_gemm.h"

#include <immintrin.h>

#include <algorithm>
#include <cassert>
#include <vector>

#include "base/cpu.h"
#include "base/memory.h"
#include "base/parallel.h"
#include "kernels/amx_dequant.h"
#include "kernels/amx_tiles.h"
#include "kernels/elementwise.h"
#include "kernels/lane_masks.h"
#include "kernels/transpose.h"

namespace pg::kernels {

void fill_probe_values(uint16_t* out, int64_t n) {
  uint32_t state = 12345;
  for (int64_t i = 0; i < n; ++i) {
    state = state * 1664525u + 1013904223u;  // (Numerical Recipes' LCG)
    // Sign and 7 mantissa bits at random, exponent 2^-1 .. 2^-4: magnitudes up to 1.
    const uint32_t bits = state >> 16;
    out[i] = static_cast<uint16_t>((bits & 0x807f) | ((123 + (bits >> 7) % 4) << 7));
  }
}

#if defined(__AMX_TILE__) && defined(__AMX_BF16__) && defined(__AMX_INT8__) && \
    defined(__AVX512BF16__)
namespace {

using amx::at_least;
using amx::configure_tiles;
using amx::kT;                   // rows of a tile: weight rows of A, pairs of B, rows of C
constexpr int64_t kStep = 32;    // columns of K per tile product
constexpr int64_t kWords = 256;  // uint32 words of packed x per block and step (a tile)

// xp (blocks x steps x kWords) from x [m, k]: block b, step s is rows 16b.., columns 32s...
void pack_x(const float* x, int64_t m, int64_t k, int64_t blocks, int64_t steps, uint32_t* xp) {
  parallel_for(blocks * steps, 16, [&](int64_t begin, int64_t end) {
    for (int64_t i = begin; i < end; ++i) {
      const int64_t b = i / steps, s = i % steps, k0 = s * kStep;
      const __mmask16 lo = first_n16(k - k0), hi = first_n16(k - k0 - 16);
      __m512i v[16];
      for (int r = 0; r < 16; ++r) {
        const int64_t row = b * kT + r;
        if (row < m) {
          const float* p = x + row * k + k0;
          const __m512 a = _mm512_maskz_loadu_ps(lo, p), c = _mm512_maskz_loadu_ps(hi, p + 16);
          v[r] = reinterpret_cast<__m512i>(_mm512_cvtne2ps_pbh(c, a));
        } else {
          v[r] = _mm512_setzero_si512();
        }
      }
      transpose16(v);  // v[p] lane r = row r's pair p
      uint32_t* dst = xp + i * kWords;
      for (int p = 0; p < 16; ++p) _mm512_store_si512(dst + p * 16, v[p]);
    }
  });
}

// The same for quantized weights, whose K the tiles take in their slots' order
// (amx_dequant.h): step s, pair q of a row is x's columns quant_slot_column(32 s + 2q) and
// the one after it (zero past k), gathered from the row rounded to bf16.
void pack_x_slots(const float* x, int64_t m, int64_t k, int64_t blocks, int64_t steps,
                  uint32_t* xp) {
  const int64_t pairs = steps * kStep / 2;  // per row, K padded to whole blocks
  // (The table depends on K alone, whose padded width its size gives: made once per K.)
  thread_local std::vector<int32_t> column_pair;
  thread_local LineAlignedVector<uint32_t> rounded_buffer;
  if (column_pair.size() != static_cast<size_t>(pairs)) {
    column_pair.resize(static_cast<size_t>(pairs));
    for (int64_t i = 0; i < pairs; ++i)
      column_pair[static_cast<size_t>(i)] =
          static_cast<int32_t>(quant_slot_column(steps, 2 * i) / 2);
  }
  uint32_t* rounded = at_least(rounded_buffer, m * pairs);
  const int32_t* columns = column_pair.data();  // (the calling thread's, for every thread)
  parallel_for(m, 4, [&](int64_t begin, int64_t end) {
    for (int64_t r = begin; r < end; ++r) {
      for (int64_t c = 0; c < 2 * pairs; c += 32) {
        const __m512 a = _mm512_maskz_loadu_ps(first_n16(k - c), x + r * k + c);
        const __m512 b = _mm512_maskz_loadu_ps(first_n16(k - c - 16), x + r * k + c + 16);
        _mm512_store_si512(rounded + r * pairs + c / 2,
                           reinterpret_cast<__m512i>(_mm512_cvtne2ps_pbh(b, a)));
      }
    }
  });
  parallel_for(blocks * steps, 16, [&](int64_t begin, int64_t end) {
    for (int64_t i = begin; i < end; ++i) {
      const int64_t b = i / steps, s = i % steps;
      // (tile row p: pair p of the step, for each of the block's rows)
      amx::gather_tile(rounded, pairs * 4, b * kT, m, _mm512_loadu_si512(columns + s * 16),
                       xp + i * kWords);
    }
  });
}

// t[r] = row r of the transposed C tile: 16 outputs (columns of y) of row r of x.
void transposed(const float* c, __m512 (&t)[16]) {
  __m512i v[16];
  for (int i = 0; i < 16; ++i) v[i] = _mm512_load_si512(c + i * 16);
  transpose16(v);
  for (int i = 0; i < 16; ++i) t[i] = _mm512_castsi512_ps(v[i]);
}

// y rows [r0, r0 + rows), columns [n0, n0 + cols) (stride ldy) = the C tile (+ bias).
void store_tile(const float* c, float* y, int64_t ldy, int64_t r0, int64_t rows, int64_t n0,
                int64_t cols, const float* bias) {
  __m512 t[16];
  transposed(c, t);
  const __mmask16 mask = first_n16(cols);
  const __m512 b = bias != nullptr ? _mm512_maskz_loadu_ps(mask, bias + n0) : _mm512_setzero_ps();
  for (int64_t r = 0; r < rows; ++r)
    _mm512_mask_storeu_ps(y + (r0 + r) * ldy + n0, mask, _mm512_add_ps(t[r], b));
}

// y rows [r0, r0 + rows), columns [n0, n0 + cols) = gelu_tanh(gate tile) * up tile (the
// gating elementwise on the tiles as they are, then one transpose).
void store_gated(const float* gate, const float* up, float* y, int64_t ldy, int64_t r0,
                 int64_t rows, int64_t n0, int64_t cols) {
  alignas(64) float g[256];
  gelu_tanh_mul_span(gate, up, g, 256);
  store_tile(g, y, ldy, r0, rows, n0, cols, nullptr);
}

// The gated tile of gate's and up's C tiles (16 outputs n0.. by 16 rows of x, as the tiles
// hold them: the gating is elementwise) straight into the next product's packed x, x block
// `block` of `steps` steps of K, rounded to bf16 as pack_x rounds them, so that the next
// product sees the values that pack_x would have made of gelu_tanh_mul's, bit for bit.
// pack_x's order: step n0 / 32, its pairs from n0 % 32 / 2. With `slots`, pack_x_slots'
// for quantized weights (amx_dequant.h): output 32 (g0 + j) + 4v + c is slot
// 32 g0 + 4n v + 4j + c of the row, each even one's pair two slots that follow.
void store_gated_packed(const float* gate, const float* up, uint32_t* xp, int64_t steps,
                        int64_t block, int64_t n0, bool slots) {
  alignas(64) float g[256];  // g[16 i + r]: output n0 + i of x's row r
  gelu_tanh_mul_span(gate, up, g, 256);
  // Word r of a pair: row r's two outputs, the even one low.
  alignas(64) static constexpr uint16_t kInterleave[32] = {
      0, 16, 1, 17, 2,  18, 3,  19, 4,  20, 5,  21, 6,  22, 7,  23,
      8, 24, 9, 25, 10, 26, 11, 27, 12, 28, 13, 29, 14, 30, 15, 31};
  const __m512i index = _mm512_load_si512(kInterleave);
  const int64_t b = n0 / kStep, g0 = b / kQuantGroup * kQuantGroup, j = b - g0;
  const int64_t n = std::min<int64_t>(kQuantGroup, steps - g0);  // the group's blocks
  for (int q = 0; q < 8; ++q) {
    const __m512bh pair =
        _mm512_cvtne2ps_pbh(_mm512_load_ps(g + (2 * q + 1) * kT), _mm512_load_ps(g + 2 * q * kT));
    const int64_t within = n0 % kStep + 2 * q;  // 4v + c of the pair's first output
    const int64_t slot = slots ? kStep * g0 + 4 * n * (within / 4) + 4 * j + within % 4
                               : n0 / kStep * kStep + within;
    _mm512_store_si512(xp + (block * steps + slot / kStep) * kWords + slot % kStep / 2 * kT,
                       _mm512_permutexvar_epi16(index, reinterpret_cast<__m512i>(pair)));
  }
}

// 16 weight rows of one output: rows [n0, n0 + rows) of out[o].w.
struct Block {
  int o;
  int64_t n0, rows;
};

// A block's rows as the tiles read them: step s at w + (s - first) * step_elems, 16 rows
// of 32 `stride` bytes apart (packed tiles, or the weight rows themselves).
struct BlockSource {
  const uint16_t* w;
  int64_t first;
  int64_t step_elems = kT * kStep;  // elements between steps (packed: a tile, 1 KiB)
  int64_t stride = 64;              // bytes between rows (packed: 64)
  uint16_t* capture = nullptr;      // where not null, each step's tile stored here, packed
};

// Row r of block b, steps [s0, s1), into its place in the block's tiles at dst (step s's
// tile at dst + (s - s0) * 512, 1 KiB each: 16 rows of 32, zero past the block's rows and
// past K), so that the tiles' loads are contiguous rather than 16 rows k apart (a multiple
// of 4 KiB for Gemma's widths: one set of L1 for all 16). Quantized weights: the row's
// blocks dequantized in their slots' order.
void pack_row(const MatmulOutput* out, const Block& b, int64_t r, int64_t k, int64_t s0, int64_t s1,
              uint16_t* dst) {
  const MatrixView& view = out[b.o].w;
  uint16_t* to = dst + r * kStep;
  if (r >= b.rows) {
    for (int64_t s = s0; s < s1; ++s)
      _mm512_store_si512(to + (s - s0) * kT * kStep, _mm512_setzero_si512());
    return;
  }
  if (view.quantized()) {
    thread_local LineAlignedVector<uint16_t> row_buffer;
    uint16_t* row = at_least(row_buffer, (s1 - s0) * kStep);
    dequantize_slots_bf16(view, b.n0 + r, s0, s1, row);
    for (int64_t s = s0; s < s1; ++s)
      _mm512_store_si512(to + (s - s0) * kT * kStep, _mm512_load_si512(row + (s - s0) * kStep));
    return;
  }
  const uint16_t* w = static_cast<const uint16_t*>(view.data) + (b.n0 + r) * k;
  for (int64_t s = s0; s < s1; ++s) {
    _mm512_store_si512(to + (s - s0) * kT * kStep,
                       _mm512_maskz_loadu_epi16(first_n32(k - s * kStep), w + s * kStep));
  }
}

// The next job's blocks packed a row at a time between the tile products of the job before
// it (pack_row every `interval` steps), so that the copy or dequantization runs beside the
// tiles rather than between jobs; finish() packs what is left.
struct RowPacker {
  const MatmulOutput* out = nullptr;
  const Block* block[2] = {};
  uint16_t* dst[2] = {};
  int64_t k = 0, s0 = 0, s1 = 0;
  int64_t next = 0, total = 0;  // rows packed so far, of the job's blocks' 16 each
  int64_t interval = 1, countdown = 1;
  void pack_next() {
    const int i = next < kT ? 0 : 1;
    pack_row(out, *block[i], next - i * kT, k, s0, s1, dst[i]);
    ++next;
  }
  void step() {
    if (--countdown > 0 || next >= total) return;
    countdown = interval;
    pack_next();
  }
  void finish() {
    while (next < total) pack_next();
  }
};

// Fetches a later job's weight rows (its blocks' steps [s0, s1)) into L2 a few lines per
// step of the job before, so that its packing finds them there.
struct Prefetcher {
  const char* row0[2] = {};  // each block's first row, at step s0
  int64_t rows[2] = {};
  int64_t row_bytes = 0, lines_per_row = 0;  // bytes between rows; lines of steps [s0, s1)
  int64_t left = 0, per_step = 0;            // lines still to fetch; lines per step
  // The next line: block b's row `row`, its line `line`. (Counted rather than divided out
  // of a running index: an integer division per line had been a tenth of the products'
  // samples under perf.)
  int b = 0;
  int64_t row = 0, line = 0;
  void fetch() {
    for (int64_t i = 0; i < per_step && left > 0; ++i, --left) {
      _mm_prefetch(row0[b] + row * row_bytes + line * 64, _MM_HINT_T1);
      if (++line < lines_per_row) continue;
      line = 0;
      if (++row < rows[b]) continue;
      row = 0, ++b;
    }
  }
};

// A pair of x's blocks' stores into y (transposing the C tiles, adding the bias or gating),
// a tile at a time between the tile products of the pair after it, whose sums go to the
// other slot: the stores' vector work and cache misses run beside the tiles rather than
// between them.
struct PendingStores {
  const MatmulOutput* out = nullptr;
  float* gated_y = nullptr;     // the gated product's output, or null
  uint32_t* handoff = nullptr;  // or its packed form for the next product (`steps` of K)
  int64_t handoff_steps = 0;
  bool handoff_slots = false;  // in the slots' order of quantized weights
  int64_t m = 0;
  bool last = false;         // the last chunk of K: add the bias
  const float* c = nullptr;  // c[2i + j]: weight block i, x block j (16 x 16 each)
  Block b[2] = {};
  bool has_b1 = false;
  int64_t r0 = 0;  // x's first row
  int nx = 0;      // x's blocks: 1 or 2
  int units = 0, next = 0;
  int64_t interval = 1, countdown = 1;

  // The stores of tiles c (x's rows r0.., nx blocks), spread over the next `steps` tile steps.
  void begin(const float* tiles, const Block& b0, const Block& b1, bool two_blocks, int64_t row0,
             int x_blocks, int64_t steps) {
    finish();
    c = tiles, b[0] = b0, b[1] = b1, has_b1 = two_blocks, r0 = row0, nx = x_blocks;
    units = gated_y != nullptr || handoff != nullptr ? nx : nx * (has_b1 ? 2 : 1);
    next = 0;
    interval = countdown = std::max<int64_t>(1, steps / (units + 1));
  }
  void run(int u) {
    const int j1 = u % nx, i = u / nx;  // x block, weight block
    const int64_t row = r0 + j1 * kT, rows = std::min(kT, m - row);
    if (handoff != nullptr) {
      store_gated_packed(c + j1 * 256, c + 512 + j1 * 256, handoff, handoff_steps, row / kT,
                         b[0].n0, handoff_slots);
      return;
    }
    if (gated_y != nullptr) {
      store_gated(c + j1 * 256, c + 512 + j1 * 256, gated_y, out[0].w.rows, row, rows, b[0].n0,
                  b[0].rows);
      return;
    }
    const Block& blk = b[i];
    store_tile(c + i * 512 + j1 * 256, out[blk.o].y, out[blk.o].w.rows, row, rows, blk.n0, blk.rows,
               last ? out[blk.o].bias : nullptr);
  }
  void step() {
    if (next >= units || --countdown > 0) return;
    countdown = interval;
    run(next++);
  }
  void finish() {
    while (next < units) run(next++);
  }
};

// The work beside a job's tile products, a little at each step: packing the next job's
// rows, fetching the one after it.
struct SideWork {
  RowPacker packer;
  Prefetcher prefetcher;
  PendingStores* stores = nullptr;
  void step() {
    packer.step();
    prefetcher.fetch();
    stores->step();
  }
};

// C tiles for weight blocks a0 (and a1 where kA1) by x blocks xb and xb + 1 (where kX1),
// over K's steps [s0, s1), into
// c[4][16][16] (c[2i + j]: weight block i, x block j; row = weight row, column = row of
// x), starting from zero or, where `from` is not null, from the sums it holds (the same
// layout; it may be c).
template <bool kA1, bool kX1>
void tiles(const BlockSource& a0, const BlockSource& a1, const uint32_t* xp, int64_t xb,
           int64_t steps, int64_t s0, int64_t s1, const float* from, float* c, SideWork& side) {
  if (from != nullptr) {
    _tile_loadd(0, from, 64);
    if constexpr (kX1) _tile_loadd(1, from + 256, 64);
    if constexpr (kA1) _tile_loadd(2, from + 512, 64);
    if constexpr (kA1 && kX1) _tile_loadd(3, from + 768, 64);
  } else {
    _tile_zero(0);
    _tile_zero(1);
    _tile_zero(2);
    _tile_zero(3);
  }
  const uint32_t* x0 = xp + xb * steps * kWords;
  const uint32_t* x1 = x0 + steps * kWords;
  for (int64_t s = s0; s < s1; ++s) {
    _tile_loadd(4, a0.w + (s - a0.first) * a0.step_elems, a0.stride);
    if constexpr (kA1) _tile_loadd(5, a1.w + (s - a1.first) * a1.step_elems, a1.stride);
    if (a0.capture != nullptr) {
      _tile_stored(4, a0.capture + (s - a0.first) * kT * kStep, 64);
      if constexpr (kA1) _tile_stored(5, a1.capture + (s - a1.first) * kT * kStep, 64);
    }
    _tile_loadd(6, x0 + s * kWords, 64);
    if constexpr (kX1) _tile_loadd(7, x1 + s * kWords, 64);
    _tile_dpbf16ps(0, 4, 6);
    if constexpr (kX1) _tile_dpbf16ps(1, 4, 7);
    if constexpr (kA1) _tile_dpbf16ps(2, 5, 6);
    if constexpr (kA1 && kX1) _tile_dpbf16ps(3, 5, 7);
    side.step();
  }
  _tile_stored(0, c, 64);
  if constexpr (kX1) _tile_stored(1, c + 256, 64);
  if constexpr (kA1) _tile_stored(2, c + 512, 64);
  if constexpr (kA1 && kX1) _tile_stored(3, c + 768, 64);
}

// Whether the tiles take these matrices: all bf16, all q8 or all q4, with k columns.
bool tile_formats(const MatmulOutput* out, int count, int64_t k) {
  const DType dtype = out[0].w.dtype;
  if (dtype != DType::kBF16 && dtype != DType::kI8 && dtype != DType::kU8) return false;
  for (int i = 0; i < count; ++i) {
    const MatrixView& w = out[i].w;
    if (w.dtype != dtype || w.cols != k || w.data == nullptr ||
        (w.quantized() && w.scales == nullptr))
      return false;
  }
  return true;
}

// Steps of K per chunk: a chunk of packed x for every row of a pass stays in L2 while the
// jobs pass over it (the down projection's K = 16384 in 8 chunks; 2048 in one).
constexpr int64_t kChunkSteps = 64;
// Packed x per pass (rows x chunk), at most: 266 prompt rows of 2048 columns (1.04 MiB) in
// one pass; 896 px's 4096 image tokens in passes of 384 rows.
constexpr int64_t kPassXBytes = 1536 << 10;

// The product over out[0..count) (gated: out[0] = gate, out[1] = up, into gated_y).
// Passes: rows of x in groups (a group's packed chunk within kPassXBytes), then K in
// chunks (the gating in one chunk), each pass the jobs' products over those rows and
// steps; a later chunk resumes from the sums the earlier left in `sums` (as the tiles hold
// them: no transposes between chunks), and the last stores into y and adds the bias, so
// the sums are those of one pass over K, bit for bit.
void run(const float* x, int64_t m, int64_t k, const MatmulOutput* out, int count, float* gated_y,
         const uint32_t* packed_x = nullptr, uint32_t* handoff = nullptr,
         bool handoff_slots = false) {
  const int64_t steps = (k + kStep - 1) / kStep, xblocks = (m + kT - 1) / kT;
  const bool quantized = out[0].w.quantized();
  const uint32_t* xp = packed_x;
  if (xp == nullptr) {
    thread_local LineAlignedVector<uint32_t> xp_buffer;
    uint32_t* buffer = at_least(xp_buffer, xblocks * steps * kWords);
    if (quantized) {
      pack_x_slots(x, m, k, xblocks, steps, buffer);
    } else {
      pack_x(x, m, k, xblocks, steps, buffer);
    }
    xp = buffer;
  }
  // The gated product's packed outputs: a last step that its tiles fill only in part (n
  // not a multiple of 32) starts as zeros; in the slots' order, the last group of steps,
  // whose slots interleave its blocks.
  const int64_t handoff_steps = (out[0].w.rows + kStep - 1) / kStep;
  if (handoff != nullptr && out[0].w.rows % kStep != 0) {
    const int64_t first =
        handoff_slots ? (handoff_steps - 1) / kQuantGroup * kQuantGroup : handoff_steps - 1;
    for (int64_t b = 0; b < xblocks; ++b) {
      std::fill(handoff + (b * handoff_steps + first) * kWords,
                handoff + (b + 1) * handoff_steps * kWords, 0u);
    }
  }
  // Bytes of a weight row per step of K (32 columns).
  const int64_t step_bytes = out[0].w.dtype == DType::kU8   ? 16
                             : out[0].w.dtype == DType::kI8 ? 32
                                                            : 64;

  // Jobs of two blocks: consecutive blocks of the outputs, or gate's and up's same rows.
  std::vector<Block> blocks;
  if (gated_y != nullptr || handoff != nullptr) {
    for (int64_t n0 = 0; n0 < out[0].w.rows; n0 += kT) {
      const int64_t rows = std::min(kT, out[0].w.rows - n0);
      blocks.push_back({0, n0, rows});
      blocks.push_back({1, n0, rows});
    }
  } else {
    for (int o = 0; o < count; ++o) {
      for (int64_t n0 = 0; n0 < out[o].w.rows; n0 += kT)
        blocks.push_back({o, n0, std::min(kT, out[o].w.rows - n0)});
    }
  }
  const int64_t jobs = (static_cast<int64_t>(blocks.size()) + 1) / 2;
  // bf16 weights in whole tiles (every block 16 rows, K whole steps): a job's first pair of
  // x's blocks loads its tiles straight from the weight rows and stores them packed for the
  // pairs after it (BlockSource::capture), rather than a RowPacker copying them a row at a
  // time beside the job before: the copy's vector loads and stores did not overlap the tile
  // products, and one tile store per tile load of the first pair costs less. (In one
  // process, alternating, 8 rounds of PaliGemma 3B's four products at 266 rows: 5-14%
  // faster, session 32.)
  const bool capture =
      out[0].w.dtype == DType::kBF16 && k % kStep == 0 &&
      std::all_of(blocks.begin(), blocks.end(), [](const Block& b) { return b.rows == kT; });
  // Near-equal chunks of whole groups of 16 steps (quantized rows are dequantized a group
  // at a time).
  const int64_t most =
      gated_y != nullptr || handoff != nullptr ? 1 : (steps + kChunkSteps - 1) / kChunkSteps;
  const int64_t chunk_steps = ((steps + most - 1) / most + 15) / 16 * 16;
  const int64_t chunks = (steps + chunk_steps - 1) / chunk_steps;
  // x's blocks per pass: an even number (pairs), near-equal groups.
  const int64_t pass_blocks_max =
      std::max<int64_t>(2, kPassXBytes / (chunk_steps * kWords * 4) / 2 * 2);
  const int64_t groups = (xblocks + pass_blocks_max - 1) / pass_blocks_max;
  const int64_t pass_blocks = ((xblocks + groups - 1) / groups + 1) / 2 * 2;
  // Sums between chunks of K: per job and pair of x's blocks of a pass, four C tiles.
  const int64_t pass_pairs = pass_blocks / 2;
  thread_local LineAlignedVector<float> sums_buffer;
  float* sums = chunks > 1 ? at_least(sums_buffer, jobs * pass_pairs * 1024) : nullptr;
  for (int64_t xb0 = 0; xb0 < xblocks; xb0 += pass_blocks) {
    const int64_t xb1 = std::min(xblocks, xb0 + pass_blocks);
    for (int64_t chunk = 0; chunk < chunks; ++chunk) {
      const int64_t s0 = chunk * chunk_steps, s1 = std::min(steps, s0 + chunk_steps);
      const bool resume = chunk > 0, last = chunk == chunks - 1;
      auto job_fn = [&](int64_t begin, int64_t end) {
        configure_tiles();
        // Two jobs' tiles: the one whose products run and the next, packed beside them.
        thread_local LineAlignedVector<uint16_t> pack_buffer;
        const int64_t block_elems = (s1 - s0) * kT * kStep;
        uint16_t* pack = at_least(pack_buffer, 4 * block_elems);
        auto tiles_of = [&](int64_t j) { return pack + (j - begin) % 2 * 2 * block_elems; };
        const auto nblocks = static_cast<int64_t>(blocks.size());
        auto packer_for = [&](int64_t j) {
          RowPacker packer;
          packer.out = out;
          for (int i = 0; i < 2 && 2 * j + i < nblocks; ++i) {
            packer.block[i] = &blocks[2 * j + i];
            packer.dst[i] = tiles_of(j) + i * block_elems;
            packer.total += kT;
          }
          packer.k = k, packer.s0 = s0, packer.s1 = s1;
          return packer;
        };
        const int64_t job_steps = (xb1 - xb0 + 1) / 2 * (s1 - s0);  // tile steps per job
        if (!capture) packer_for(begin).finish();
        alignas(64) float c_slots[2 * 1024];
        PendingStores pending;
        int64_t pair_count = 0;  // the pairs run so far: their slots alternate
        pending.out = out, pending.gated_y = gated_y, pending.m = m, pending.last = last;
        pending.handoff = handoff, pending.handoff_steps = handoff_steps;
        pending.handoff_slots = handoff_slots;
        for (int64_t j = begin; j < end; ++j) {
          const Block& b0 = blocks[2 * j];
          const bool has_b1 = 2 * j + 1 < nblocks;
          const Block& b1 = has_b1 ? blocks[2 * j + 1] : b0;
          BlockSource a0{tiles_of(j), s0};
          BlockSource a1{has_b1 ? tiles_of(j) + block_elems : tiles_of(j), s0};
          SideWork side;
          side.stores = &pending;
          if (j + 1 < end && !capture) {
            side.packer = packer_for(j + 1);
            side.packer.interval = side.packer.countdown =
                std::max<int64_t>(1, job_steps / side.packer.total);
          }
          Prefetcher& pf = side.prefetcher;
          // (Captured tiles are read by the job itself: fetch the next job's rows.)
          const int64_t ahead = capture ? 1 : 2;
          if (j + ahead < end) {
            for (int i = 0; i < 2; ++i) {
              const int64_t bi = 2 * (j + ahead) + i;
              if (bi >= nblocks) break;
              const Block& nb = blocks[bi];
              const MatrixView& v = out[nb.o].w;
              pf.row0[i] =
                  static_cast<const char*>(v.data) + nb.n0 * v.row_bytes() + s0 * step_bytes;
              pf.rows[i] = nb.rows;
              pf.row_bytes = v.row_bytes();
            }
            pf.lines_per_row = ((s1 - s0) * step_bytes + 63) / 64;
            pf.left = (pf.rows[0] + pf.rows[1]) * pf.lines_per_row;
            pf.per_step = (pf.left + job_steps - 1) / job_steps;
          }
          for (int64_t xb = xb0; xb < xb1; xb += 2) {
            // The last chunk's sums go to slot `pair_count % 2` of c_slots, while the stores
            // of the pair before it, in the other slot, run beside its products; the chunks
            // before it leave theirs in `sums`, as the tiles hold them.
            const bool two = xb + 1 < xb1;
            const int nx = two ? 2 : 1;
            float* pair_sums =
                sums != nullptr ? sums + (j * pass_pairs + (xb - xb0) / 2) * 1024 : nullptr;
            const float* from = resume ? pair_sums : nullptr;
            if (capture) {  // (the first pair from the weights, the others from its copy)
              auto source = [&](const Block& b, uint16_t* packed) {
                if (xb != xb0) return BlockSource{packed, s0};
                return BlockSource{
                    static_cast<const uint16_t*>(out[b.o].w.data) + b.n0 * k + s0 * kStep, s0,
                    kStep, k * 2, packed};
              };
              a0 = source(b0, tiles_of(j));
              a1 = source(b1, has_b1 ? tiles_of(j) + block_elems : tiles_of(j));
            }
            float* c = last ? c_slots + pair_count++ % 2 * 1024 : pair_sums;
            if (has_b1 && two)
              tiles<true, true>(a0, a1, xp, xb, steps, s0, s1, from, c, side);
            else if (has_b1)
              tiles<true, false>(a0, a1, xp, xb, steps, s0, s1, from, c, side);
            else if (two)
              tiles<false, true>(a0, a1, xp, xb, steps, s0, s1, from, c, side);
            else
              tiles<false, false>(a0, a1, xp, xb, steps, s0, s1, from, c, side);
            if (!last) continue;
            // (begin() first finishes the stores of the pair before, in the slot that the
            // pair after this one takes.)
            pending.begin(c, b0, b1, has_b1, xb * kT, nx, s1 - s0);
          }
          side.packer.finish();
        }
        pending.finish();
        _tile_release();
      };
      parallel_claims(jobs, jobs, 2, jobs, job_fn);
    }
  }
}

// Four tiles of operands for the probes: bf16 in [-1, 1) (or, as int8 codes, any bytes)
// from a fixed pseudo-random sequence. (Not zeros: AMX multiplies tiles of zeros faster,
// 13-17% in session 32 on an Emerald Rapids, alternating in one process, 40 rounds each
// twice: random / zeros 0.888 and 0.858, so a probe of zeros overstated the peak that
// products of real values reach.)
const uint16_t* probe_operands() {
  alignas(64) static uint16_t operands[4 * kT * 32];
  static const bool filled = (fill_probe_values(operands, 4 * kT * 32), true);
  (void)filled;
  return operands;
}

// n rounds of four tile products on four accumulators from register-resident tiles.
template <bool kInt8>
bool probe_loop(int64_t n) {
  if (!amx_enabled()) return false;
  configure_tiles();
  const uint16_t* operands = probe_operands();
  _tile_loadd(4, operands, 64);
  _tile_loadd(5, operands + kT * 32, 64);
  _tile_loadd(6, operands + 2 * kT * 32, 64);
  _tile_loadd(7, operands + 3 * kT * 32, 64);
  _tile_zero(0);
  _tile_zero(1);
  _tile_zero(2);
  _tile_zero(3);
  for (int64_t i = 0; i < n; ++i) {
    if constexpr (kInt8) {
      _tile_dpbusd(0, 4, 6);
      _tile_dpbusd(1, 4, 7);
      _tile_dpbusd(2, 5, 6);
      _tile_dpbusd(3, 5, 7);
    } else {
      _tile_dpbf16ps(0, 4, 6);
      _tile_dpbf16ps(1, 4, 7);
      _tile_dpbf16ps(2, 5, 6);
      _tile_dpbf16ps(3, 5, 7);
    }
  }
  _tile_release();
  return true;
}

}  // namespace

bool amx_products_run() { return amx_enabled(); }

bool gemm_bf16_amx(const float* x, int64_t m, int64_t k, const MatmulOutput* out, int count) {
  if (m <= 0 || k <= 0 || count <= 0 || !tile_formats(out, count, k) || !amx_enabled())
    return false;
  run(x, m, k, out, count, nullptr);
  return true;
}

bool gemm_bf16_amx_gelu_mul(const float* x, int64_t m, const MatrixView& gate, const MatrixView& up,
                            float* y) {
  const MatmulOutput out[2] = {{gate, nullptr, nullptr}, {up, nullptr, nullptr}};
  if (m <= 0 || gate.cols <= 0 || up.rows != gate.rows || !tile_formats(out, 2, gate.cols) ||
      !amx_enabled()) {
    return false;
  }
  run(x, m, gate.cols, out, 2, y);
  return true;
}

bool gemm_bf16_amx_mlp(const float* x, int64_t m, const MatrixView& gate, const MatrixView& up,
                       const MatrixView& down, float* y) {
  const MatmulOutput gated[2] = {{gate, nullptr, nullptr}, {up, nullptr, nullptr}};
  const MatmulOutput projected{down, nullptr, y};
  if (m <= 0 || gate.cols <= 0 || up.rows != gate.rows || !tile_formats(gated, 2, gate.cols) ||
      !tile_formats(&projected, 1, gate.rows) || !amx_enabled()) {
    return false;
  }
  // The gated activations, packed as pack_x (or for quantized down weights pack_x_slots)
  // packs the down projection's x.
  const int64_t xblocks = (m + kT - 1) / kT, steps = (gate.rows + kStep - 1) / kStep;
  thread_local LineAlignedVector<uint32_t> handoff_buffer;
  uint32_t* handoff = at_least(handoff_buffer, xblocks * steps * kWords);
  run(x, m, gate.cols, gated, 2, nullptr, nullptr, handoff, down.quantized());
  run(nullptr, m, gate.rows, &projected, 1, nullptr, handoff);
  return true;
}

void amx_attention_scores(const uint16_t* q, int64_t ldq, const uint16_t* kt, int64_t dd,
                          int64_t blocks, float* s, int64_t lds) {
  // Tiles: 0-3 accumulators (C[i][j] = tile 2i + j: query rows 16i.., key block b + j),
  // 4-5 the two tiles of query rows, 6-7 two key blocks: four independent sums, as a tile
  // product's latency is several times its issue interval.
  assert(dd % kStep == 0);  // (dims past the last whole step would be left out)
  configure_tiles();
  const int64_t steps = dd / kStep, block = dd * kT;  // block: elements per key block
  const uint16_t* q1 = q + kT * ldq;
  for (int64_t b = 0; b < blocks; b += 2) {
    const bool two = b + 1 < blocks;
    const uint16_t* k0 = kt + b * block;
    const uint16_t* k1 = k0 + block;
    _tile_zero(0);
    _tile_zero(1);
    _tile_zero(2);
    _tile_zero(3);
    for (int64_t st = 0; st < steps; ++st) {
      _tile_loadd(4, q + st * kStep, ldq * 2);
      _tile_loadd(5, q1 + st * kStep, ldq * 2);
      _tile_loadd(6, k0 + st * kT * kStep, 64);
      _tile_dpbf16ps(0, 4, 6);
      _tile_dpbf16ps(2, 5, 6);
      if (two) {
        _tile_loadd(7, k1 + st * kT * kStep, 64);
        _tile_dpbf16ps(1, 4, 7);
        _tile_dpbf16ps(3, 5, 7);
      }
    }
    _tile_stored(0, s + b * kT, lds * 4);
    _tile_stored(2, s + kT * lds + b * kT, lds * 4);
    if (two) {
      _tile_stored(1, s + (b + 1) * kT, lds * 4);
      _tile_stored(3, s + kT * lds + (b + 1) * kT, lds * 4);
    }
  }
  _tile_release();
}

void amx_attention_pv(const uint16_t* p, int64_t ldp, const uint16_t* vt, int64_t ldv, int64_t dd,
                      int64_t keys, float* o, int64_t ldo) {
  // Tiles: 0-3 accumulators (C[i][j] = tile 2i + j: rows 16i.., dims d0 + 16j..), 4-5 the
  // probabilities' two tiles of rows, 6-7 two tiles of dims of the values. (A last partial
  // tile of dims runs whole: o's and vt's rows reach the next multiple of 16.)
  assert(ldv >= (dd + kT - 1) / kT * kT && ldo >= (dd + kT - 1) / kT * kT);
  configure_tiles();
  const int64_t steps = (keys + kStep - 1) / kStep;
  const uint16_t* p1 = p + kT * ldp;
  for (int64_t d0 = 0; d0 < dd; d0 += 2 * kT) {
    const bool two = d0 + kT < dd;
    float* o0 = o + d0;         // rows 0..15, dims d0..
    float* o1 = o0 + kT * ldo;  // rows 16..31
    _tile_loadd(0, o0, ldo * 4);
    _tile_loadd(2, o1, ldo * 4);
    if (two) {
      _tile_loadd(1, o0 + kT, ldo * 4);
      _tile_loadd(3, o1 + kT, ldo * 4);
    }
    for (int64_t st = 0; st < steps; ++st) {
      const uint16_t* v = vt + st * kT * ldv * 2 + d0 * 2;
      _tile_loadd(4, p + st * kStep, ldp * 2);
      _tile_loadd(5, p1 + st * kStep, ldp * 2);
      _tile_loadd(6, v, ldv * 4);
      _tile_dpbf16ps(0, 4, 6);
      _tile_dpbf16ps(2, 5, 6);
      if (two) {
        _tile_loadd(7, v + 2 * kT, ldv * 4);
        _tile_dpbf16ps(1, 4, 7);
        _tile_dpbf16ps(3, 5, 7);
      }
    }
    _tile_stored(0, o0, ldo * 4);
    _tile_stored(2, o1, ldo * 4);
    if (two) {
      _tile_stored(1, o0 + kT, ldo * 4);
      _tile_stored(3, o1 + kT, ldo * 4);
    }
  }
  _tile_release();
}

bool amx_bf16_loop(int64_t n) { return probe_loop<false>(n); }
bool amx_int8_loop(int64_t n) { return probe_loop<true>(n); }

int64_t amx_bf16_loop_loaded(const uint16_t* w, const uint16_t* x, int64_t steps, int64_t x_blocks,
                             int64_t jobs) {
  if (!amx_enabled() || steps <= 0 || x_blocks <= 0 || jobs <= 0) return 0;
  configure_tiles();
  // The products' own loop (tiles()), with nothing beside it: no packing, prefetch or stores.
  PendingStores no_stores;
  SideWork side;
  side.stores = &no_stores;
  const BlockSource a0{w, 0}, a1{w + steps * kT * kStep, 0};
  const auto* xp = reinterpret_cast<const uint32_t*>(x);
  alignas(64) float c[1024];
  int64_t products = 0;
  for (int64_t j = 0; j < jobs; ++j) {
    for (int64_t b = 0; b + 1 < x_blocks; b += 2) {
      tiles<true, true>(a0, a1, xp, b, steps, 0, steps, nullptr, c, side);
      products += 4 * steps;
    }
  }
  _tile_release();
  return products;
}

#else

bool amx_products_run() { return false; }
bool gemm_bf16_amx(const float*, int64_t, int64_t, const MatmulOutput*, int) { return false; }
bool gemm_bf16_amx_gelu_mul(const float*, int64_t, const MatrixView&, const MatrixView&, float*) {
  return false;
}
bool gemm_bf16_amx_mlp(const float*, int64_t, const MatrixView&, const MatrixView&,
                       const MatrixView&, float*) {
  return false;
}
void amx_attention_scores(const uint16_t*, int64_t, const uint16_t*, int64_t, int64_t, float*,
                          int64_t) {}
void amx_attention_pv(const uint16_t*, int64_t, const uint16_t*, int64_t, int64_t, int64_t, float*,
                      int64_t) {}
bool amx_bf16_loop(int64_t) { return false; }
bool amx_int8_loop(int64_t) { return false; }
int64_t amx_bf16_loop_loaded(const uint16_t*, const uint16_t*, int64_t, int64_t, int64_t) {
  return 0;
}

#endif

}  // namespace pg::kernels
