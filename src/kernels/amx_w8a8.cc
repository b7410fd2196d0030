// Per-output-channel int8 weights times int8 activations on AMX tiles (tdpbssd).
//
// A tile product C[16, 16] += A[16, 64] B[16, 64] (int8, sums in int32) takes A as 16 rows
// of 64 bytes and B in quads: B's row q holds, for each of C's 16 columns, the 4 bytes that
// meet A's columns 4q..4q+3. Here A is 16 weight rows, 64 bytes of each as stored (the q8
// group layout, tensor.h: a row's codes in the order of their slots, amx_dequant.h), and B
// is x quantized per row and packed in the same slot order, so no weight byte moves. As the
// row's blocks share one scale, the sums run across blocks, and each output is scaled once:
// C holds 16 outputs by 16 rows of x, converted, scaled and transposed into y.
//
// Tiles: 0-3 accumulators (C[i][j] = tile 2i + j: weight block i, x block j), 4-5 weight
// blocks, 6-7 x blocks: each step of 64 slots loads 2 + 2 tiles for 4 products (the bf16
// products' blocking, amx_gemm.cc, at twice the multiply-adds per tile).
// Packed x, per block of 16 rows and step of 64 slots (256 int32 words, 1 KiB):
//   xp[block][step][quad 16][row 16] (rows past m zero; slots past k hold code 0)
// Work: jobs of two weight blocks (16 rows each; the gated product's gate and up of the
// same rows), claimed by the threads. A job passes over every pair of x's blocks: the first
// pair loads its tiles from the weight rows and stores each packed as it is loaded (an odd
// number of blocks, whose last step is half a tile row: copied packed before the job), the
// pairs after it read the packed copy. While it runs, it fetches the next job's rows into
// L2 (the next of the thread's claimed run). Long K goes in chunks and many rows of x in
// passes, as in amx_gemm.cc, so that a pass's packed x stays in L2; the sums between chunks
// wait in int32, as the tiles hold them.
#include "kernels/amx_w8a8.h"

#include <immintrin.h>

#include <algorithm>
#include <cmath>
#include <limits>
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

#if defined(__AMX_TILE__) && defined(__AMX_INT8__) && defined(__AVX512BW__)

namespace {

using amx::at_least;
using amx::configure_tiles;
using amx::kT;
constexpr int64_t kStepBytes = 64;  // slots (codes) of a row per tile product
constexpr int64_t kWords = 256;     // int32 words of a packed tile (1 KiB)
// Steps per chunk of K (4096 slots: the down projection's K = 16384 in 4 chunks) and bytes
// of packed x per pass (rows x chunk), at most: as in amx_gemm.cc.
constexpr int64_t kChunkSteps = 64;
constexpr int64_t kPassXBytes = 1536 << 10;

struct Block {
  int o;       // output
  int64_t n0;  // first of its 16 rows
};

// xp (blocks x steps x kWords) from x [m, k], for weight rows of nb blocks: block b, step s
// is rows 16b.., slots 64s.. (an odd nb's last step half zeros). Also x's scales, [m].
void pack_x(const float* x, int64_t m, int64_t k, int64_t nb, int64_t blocks, int64_t steps,
            int32_t* xp, float* x_scale) {
  const int64_t row_bytes = steps * kStepBytes;  // K padded to whole steps
  thread_local LineAlignedVector<int8_t> rows_buffer;
  int8_t* q = at_least(rows_buffer, m * row_bytes);
  quantize_rows_int8(x, m, k, q, row_bytes, x_scale);
  // word[16 s + j]: the int32 word (4 codes) of a quantized row that quad j of step s holds
  // (past the blocks, a word of the zeros past k).
  std::vector<int32_t> word(static_cast<size_t>(steps * 16));
  for (int64_t i = 0; i < steps * 16; ++i) {
    const int64_t u = 4 * i;
    word[static_cast<size_t>(i)] =
        static_cast<int32_t>((u < nb * kQuantBlock ? quant_slot_column(nb, u) : u) / 4);
  }
  const int32_t* words = word.data();  // (the calling thread's, for every thread)
  parallel_for(blocks * steps, 16, [&](int64_t begin, int64_t end) {
    for (int64_t i = begin; i < end; ++i) {
      const int64_t b = i / steps, s = i % steps;
      // (tile row j: quad j of the step, for each of the block's rows)
      amx::gather_tile(q, row_bytes, b * kT, m, _mm512_loadu_si512(words + 16 * s),
                       xp + i * kWords);
    }
  });
}

// Fetches a job's weight rows (a chunk of K of each) into L2, a few lines per step of the
// job before it, counting rows and lines.
struct Prefetcher {
  const char* row0[2] = {nullptr, nullptr};
  int64_t rows = 0, row_bytes = 0, lines_per_row = 0;
  int64_t per_step = 0, left = 0, block = 0, row = 0, line = 0;
  void step() {
    for (int64_t i = 0; i < per_step && left > 0; ++i, --left) {
      _mm_prefetch(row0[block] + row * row_bytes + line * 64, _MM_HINT_T1);
      if (++line == lines_per_row) {
        line = 0;
        if (++row == rows) row = 0, ++block;
      }
    }
  }
};

// The 2 x 2 (or fewer) tile products of steps [0, steps) of a job's packed weight blocks
// (w0, w1: tile s at s * kWords) and x's blocks xb, xb + 1 (x0, x1: tile s at s * kWords),
// resuming from `from` (four tiles) or from zero, the sums stored into c (four tiles).
// Where a block's weight tiles come from: packed (tile s at s KiB, rows 64 bytes apart), or
// the weight rows themselves (tile s at 64 s bytes, rows row_bytes apart), each tile then
// stored packed into `capture` as it is loaded.
struct WeightTiles {
  const int8_t* p = nullptr;
  int64_t step = 4 * kWords, stride = kStepBytes;
  int8_t* capture = nullptr;
};

template <bool kTwoW, bool kTwoX>
void tiles(const WeightTiles& w0, const WeightTiles& w1, const int32_t* x0, const int32_t* x1,
           int64_t steps, const int32_t* from, int32_t* c, Prefetcher& pf) {
  if (from != nullptr) {
    _tile_loadd(0, from, 64);
    if (kTwoX) _tile_loadd(1, from + kWords, 64);
    if (kTwoW) _tile_loadd(2, from + 2 * kWords, 64);
    if (kTwoW && kTwoX) _tile_loadd(3, from + 3 * kWords, 64);
  } else {
    _tile_zero(0);
    if (kTwoX) _tile_zero(1);
    if (kTwoW) _tile_zero(2);
    if (kTwoW && kTwoX) _tile_zero(3);
  }
  for (int64_t s = 0; s < steps; ++s) {
    _tile_loadd(4, w0.p + s * w0.step, w0.stride);
    if (w0.capture != nullptr) _tile_stored(4, w0.capture + s * 4 * kWords, 64);
    _tile_loadd(6, x0 + s * kWords, 64);
    _tile_dpbssd(0, 4, 6);
    if (kTwoX) {
      _tile_loadd(7, x1 + s * kWords, 64);
      _tile_dpbssd(1, 4, 7);
    }
    if (kTwoW) {
      _tile_loadd(5, w1.p + s * w1.step, w1.stride);
      if (w1.capture != nullptr) _tile_stored(5, w1.capture + s * 4 * kWords, 64);
      _tile_dpbssd(2, 5, 6);
      if (kTwoX) _tile_dpbssd(3, 5, 7);
    }
    pf.step();
  }
  _tile_stored(0, c, 64);
  if (kTwoX) _tile_stored(1, c + kWords, 64);
  if (kTwoW) _tile_stored(2, c + 2 * kWords, 64);
  if (kTwoW && kTwoX) _tile_stored(3, c + 3 * kWords, 64);
}

// y[row0 + r, n0 + i] = fma(float(c[i][r]), w_scale[i] * x_scale[row0 + r], bias[i]) for the
// rows r < 16 below m: one C tile (16 outputs by 16 rows of x) transposed into y.
void store_tile(const int32_t* c, const float* w_scale, const float* bias, const float* x_scale,
                int64_t row0, int64_t m, float* y, int64_t ldy) {
  __m512i v[16];
  for (int i = 0; i < 16; ++i) v[i] = _mm512_load_si512(c + 16 * i);
  transpose16(v);  // v[r] lane i = output i of row r
  const __m512 ws = _mm512_loadu_ps(w_scale);
  const __m512 b = bias != nullptr ? _mm512_loadu_ps(bias) : _mm512_setzero_ps();
  const int64_t rows = std::min<int64_t>(kT, m - row0);
  for (int64_t r = 0; r < rows; ++r) {
    const __m512 scale = _mm512_mul_ps(ws, _mm512_set1_ps(x_scale[row0 + r]));
    _mm512_storeu_ps(y + (row0 + r) * ldy, _mm512_fmadd_ps(_mm512_cvtepi32_ps(v[r]), scale, b));
  }
}

// The product over out[0..count), or with gated_y the gating's (out[0] = gate, out[1] = up:
// each job gate's and up's same 16 rows, whose tiles become gelu_tanh(gate) * up in
// gated_y, [m, gate rows], as they are stored).
void run(const float* x, int64_t m, int64_t k, const MatmulOutput* out, int count, float* gated_y) {
  const int64_t row_bytes = out[0].w.row_bytes(), nb = quant_blocks(k);
  const int64_t steps = (row_bytes + kStepBytes - 1) / kStepBytes, xblocks = (m + kT - 1) / kT;
  thread_local LineAlignedVector<int32_t> xp_buffer;
  thread_local LineAlignedVector<float> x_scale_buffer;
  int32_t* xp = at_least(xp_buffer, xblocks * steps * kWords);
  float* x_scale = at_least(x_scale_buffer, m);
  pack_x(x, m, k, nb, xblocks, steps, xp, x_scale);

  // The weights' 16-row blocks, output after output (gated: gate's and up's in turn), and
  // their row scales.
  std::vector<Block> blocks;
  std::vector<float> w_scale;
  for (int o = 0; o < count; ++o) {
    for (int64_t n0 = 0; gated_y == nullptr && n0 < out[o].w.rows; n0 += kT)
      blocks.push_back({o, n0});
    for (int64_t n = 0; n < out[o].w.rows; ++n) w_scale.push_back(out[o].w.scales[n * nb]);
  }
  for (int64_t n0 = 0; gated_y != nullptr && n0 < out[0].w.rows; n0 += kT) {
    blocks.push_back({0, n0});
    blocks.push_back({1, n0});
  }
  std::vector<int64_t> scale_at(static_cast<size_t>(count) + 1, 0);  // first scale per output
  for (int o = 0; o < count; ++o)
    scale_at[static_cast<size_t>(o) + 1] = scale_at[o] + out[o].w.rows;
  const auto nblocks = static_cast<int64_t>(blocks.size());
  const int64_t jobs = (nblocks + 1) / 2;

  // Near-equal chunks of K, and passes of x's blocks (an even number, near-equal groups).
  const int64_t most = (steps + kChunkSteps - 1) / kChunkSteps;
  const int64_t chunk_steps = (steps + most - 1) / most;
  const int64_t chunks = (steps + chunk_steps - 1) / chunk_steps;
  const int64_t pass_blocks_max =
      std::max<int64_t>(2, kPassXBytes / (chunk_steps * 4 * kWords) / 2 * 2);
  const int64_t groups = (xblocks + pass_blocks_max - 1) / pass_blocks_max;
  const int64_t pass_blocks = ((xblocks + groups - 1) / groups + 1) / 2 * 2;
  const int64_t pass_pairs = pass_blocks / 2;
  // Sums between chunks: per job and pair of a pass, four C tiles.
  thread_local LineAlignedVector<int32_t> sums_buffer;
  int32_t* sums = chunks > 1 ? at_least(sums_buffer, jobs * pass_pairs * 4 * kWords) : nullptr;

  for (int64_t xb0 = 0; xb0 < xblocks; xb0 += pass_blocks) {
    const int64_t xb1 = std::min(xblocks, xb0 + pass_blocks);
    for (int64_t chunk = 0; chunk < chunks; ++chunk) {
      const int64_t s0 = chunk * chunk_steps, s1 = std::min(steps, s0 + chunk_steps);
      const int64_t cs = s1 - s0;
      const bool last = chunk == chunks - 1;
      auto job_fn = [&](int64_t begin, int64_t end) {
        configure_tiles();
        // A job's packed tiles: block 0's steps, then block 1's.
        thread_local LineAlignedVector<int8_t> pack_buffer;
        int8_t* pack = at_least(pack_buffer, 2 * cs * 4 * kWords);
        alignas(64) int32_t c[4 * kWords];
        const int64_t job_steps = (xb1 - xb0 + 1) / 2 * cs;
        for (int64_t j = begin; j < end; ++j) {
          const bool has_b1 = 2 * j + 1 < nblocks;
          const int nw = has_b1 ? 2 : 1;
          // The job's tiles, packed: captured in its first pair where the rows are whole
          // tiles (rather than copied before it: in one process, alternating, 10 rounds of
          // PaliGemma 3B's products at 267 rows, twice, 1.00-1.07 times as fast, gate and up
          // 1.037 and 1.042; session 33), else copied before it.
          const bool capture = row_bytes % kStepBytes == 0;
          for (int i = 0; i < nw && !capture; ++i) {
            const Block& b = blocks[static_cast<size_t>(2 * j + i)];
            const auto* src =
                static_cast<const int8_t*>(out[b.o].w.data) + b.n0 * row_bytes + s0 * kStepBytes;
            int8_t* dst = pack + i * cs * 4 * kWords;
            for (int64_t s = 0; s < cs; ++s) {
              if ((s0 + s + 1) * kStepBytes <= row_bytes) {
                _tile_loadd(4, src + s * kStepBytes, row_bytes);
                _tile_stored(4, dst + s * 4 * kWords, 64);
                continue;
              }
              // An odd number of blocks: the last step's 32 bytes of each row, then zeros.
              for (int64_t r = 0; r < kT; ++r) {
                _mm512_store_si512(
                    dst + s * 4 * kWords + r * kStepBytes,
                    _mm512_maskz_loadu_epi8(0xffffffffull, src + r * row_bytes + s * kStepBytes));
              }
            }
          }
          Prefetcher pf;
          if (j + 1 < end) {
            const bool next_two = 2 * (j + 1) + 1 < nblocks;
            for (int i = 0; i < (next_two ? 2 : 1); ++i) {
              const Block& b = blocks[static_cast<size_t>(2 * (j + 1) + i)];
              pf.row0[i] =
                  static_cast<const char*>(out[b.o].w.data) + b.n0 * row_bytes + s0 * kStepBytes;
            }
            pf.rows = kT, pf.row_bytes = row_bytes, pf.lines_per_row = cs;
            pf.left = (next_two ? 2 : 1) * kT * cs;
            pf.per_step = (pf.left + job_steps - 1) / job_steps;
          }
          WeightTiles w0, w1;
          w0.p = pack;
          w1.p = pack + cs * 4 * kWords;
          for (int64_t xb = xb0; xb < xb1; xb += 2) {
            const bool two = xb + 1 < xb1;
            for (int i = 0; capture && i < nw; ++i) {
              WeightTiles& w = i == 0 ? w0 : w1;
              int8_t* packed = pack + i * cs * 4 * kWords;
              w = WeightTiles{};
              w.p = packed;
              if (xb == xb0) {
                const Block& b = blocks[static_cast<size_t>(2 * j + i)];
                w.p = static_cast<const int8_t*>(out[b.o].w.data) + b.n0 * row_bytes +
                      s0 * kStepBytes;
                w.step = kStepBytes, w.stride = row_bytes, w.capture = packed;
              }
            }
            const int32_t* x0 = xp + (xb * steps + s0) * kWords;
            const int32_t* x1 = x0 + steps * kWords;
            int32_t* pair_sums =
                sums != nullptr ? sums + (j * pass_pairs + (xb - xb0) / 2) * 4 * kWords : nullptr;
            const int32_t* from = chunk > 0 ? pair_sums : nullptr;
            int32_t* to = last ? c : pair_sums;
            if (has_b1 && two)
              tiles<true, true>(w0, w1, x0, x1, cs, from, to, pf);
            else if (has_b1)
              tiles<true, false>(w0, w1, x0, x1, cs, from, to, pf);
            else if (two)
              tiles<false, true>(w0, w1, x0, x1, cs, from, to, pf);
            else
              tiles<false, false>(w0, w1, x0, x1, cs, from, to, pf);
            if (!last) continue;
            if (gated_y != nullptr) {  // gelu_tanh(gate) * up, a tile at a time
              const int64_t n0 = blocks[static_cast<size_t>(2 * j)].n0, n = out[0].w.rows;
              alignas(64) float stage[2][kT * kT];
              for (int jj = 0; jj < (two ? 2 : 1); ++jj) {
                const int64_t row0 = (xb + jj) * kT, rows = std::min<int64_t>(kT, m - row0);
                for (int i = 0; i < 2; ++i) {
                  const float* ws = w_scale.data() + scale_at[static_cast<size_t>(i)] + n0;
                  store_tile(c + (2 * i + jj) * kWords, ws, nullptr, x_scale + row0, 0, rows,
                             stage[i], kT);
                }
                gelu_tanh_mul_span(stage[0], stage[1], stage[0], rows * kT);
                for (int64_t r = 0; r < rows; ++r)
                  std::copy(stage[0] + r * kT, stage[0] + (r + 1) * kT,
                            gated_y + (row0 + r) * n + n0);
              }
              continue;
            }
            for (int i = 0; i < nw; ++i) {
              const Block& b = blocks[static_cast<size_t>(2 * j + i)];
              const MatmulOutput& o = out[b.o];
              const float* ws = w_scale.data() + scale_at[static_cast<size_t>(b.o)] + b.n0;
              const float* bias = o.bias != nullptr ? o.bias + b.n0 : nullptr;
              for (int jj = 0; jj < (two ? 2 : 1); ++jj) {
                store_tile(c + (2 * i + jj) * kWords, ws, bias, x_scale, (xb + jj) * kT, m,
                           o.y + b.n0, o.w.rows);
              }
            }
          }
        }
        _tile_release();
      };
      parallel_claims(jobs, jobs, 2, jobs, job_fn);
    }
  }
}

}  // namespace

bool w8a8_products_run() { return amx_enabled(); }

bool gemm_w8a8_amx(const float* x, int64_t m, int64_t k, const MatmulOutput* out, int count) {
  if (m <= 0 || !w8a8_formats(out, count, k) || !amx_enabled()) return false;
  run(x, m, k, out, count, nullptr);
  return true;
}

bool gemm_w8a8_amx_gelu_mul(const float* x, int64_t m, const MatrixView& gate, const MatrixView& up,
                            float* y) {
  const MatmulOutput out[2] = {{gate, nullptr, nullptr}, {up, nullptr, nullptr}};
  if (m <= 0 || up.rows != gate.rows || !w8a8_formats(out, 2, gate.cols) || !amx_enabled())
    return false;
  run(x, m, gate.cols, out, 2, y);
  return true;
}

#else

bool w8a8_products_run() { return false; }
bool gemm_w8a8_amx(const float*, int64_t, int64_t, const MatmulOutput*, int) { return false; }
bool gemm_w8a8_amx_gelu_mul(const float*, int64_t, const MatrixView&, const MatrixView&, float*) {
  return false;
}

#endif

}  // namespace pg::kernels
