// The decode products' schedule (fast.cc's bf16 rows, quant.cc's q8/q4 rows): rows of W
// are read two at a time, far apart, so that one set of activation loads serves both rows
// and each core keeps two streams of weights in flight.
#pragma once

#include <algorithm>
#include <cstdint>

#include "base/parallel.h"

namespace pg::kernels {

// y[m, n] (+ bias) from dot products of W's n rows with x's m rows (m small). Each chunk of
// rows [r0, r1) (below) is read as two streams side by side, row r with row r + h (h = half
// the chunk): on Zen 4 (2 threads, 512 MiB of bf16 rows) that read 60-69 GB/s against 52-60
// one row at a time (a plain read: 71-73 against 60-66, roofline.cc). dot2(ra, rb, i0, mr,
// out) fills out[0 .. mr) with x_{i0 + i} . w_ra and out[4 .. 4 + mr) with x_{i0 + i} . w_rb
// (rb < 0: ra alone), for groups of up to 4 rows of x.
// The pair's distance h is odd (one less where half the chunk is even): PaliGemma's MLP
// rows are a power of two bytes long (q8 gate and up 2 KiB, down 16 KiB) and its chunks a
// power of two rows, so an even h put the two streams a power of two apart (1 MiB), where
// they meet in the same cache sets and, it seems, DRAM banks. On an Intel Emerald Rapids
// (session 31; 2 threads, > 900 MiB of PaliGemma's decoder layers and LM head, passes
// alternating in one process, medians of 12-14), an odd h read q8 25.8 -> 27.5 and 27.2
// -> 28.0 GB/s, q4 23.1 -> 25.1 and 26.1 -> 27.9; the 16384 x 2048 q8 matrix alone 26.7
// -> 30.0; bf16 (rows of 4 KiB) and PaliGemma 2's q8 layers equal (30.8 / 30.5, 28.9 /
// 28.8). The rows left over at a chunk's end (one to three) go alone.
// The rows are cut into kChunksPerThread chunks per thread, handed out as threads finish
// (each chunk read as two streams): on the shared development machine one thread is often
// slowed by other work, and a static half each left the other idle. Alternated against
// static halves: PaliGemma 2 3B decode bf16 6.6-8.5 tok/s against 5.9-7.9, q4 18.5-22.9
// against 16.2-22.9; kernels_bench BM_decode_layers/gemma2 bf16 54.9-68.2 GB/s against
// 47.7-67.8, q8 and q4 within noise (45.7-53.8 against 47.5-56.5, 40.3-45.2 against
// 32.7-46.4).
inline constexpr int64_t kChunksPerThread = 8;

template <class Dot2>
void for_row_pairs_small_m(int64_t m, int64_t n, int64_t k, const float* bias, float* y,
                           Dot2 dot2) {
  const int64_t grain = std::max<int64_t>(4, 16384 / std::max<int64_t>(1, k * m));
  auto body = [&](int64_t r0, int64_t r1) {
    const int64_t half = (r1 - r0) / 2, h = half % 2 == 0 && half > 0 ? half - 1 : half;
    auto emit = [&](int64_t ra, int64_t rb) {
      for (int64_t i0 = 0; i0 < m; i0 += 4) {
        const int mr = static_cast<int>(std::min<int64_t>(4, m - i0));
        float out[8];
        dot2(ra, rb, i0, mr, out);
        for (int j = 0; j < (rb < 0 ? 1 : 2); ++j) {
          const int64_t r = j == 0 ? ra : rb;
          for (int i = 0; i < mr; ++i) {
            y[(i0 + i) * n + r] = out[4 * j + i] + (bias != nullptr ? bias[r] : 0.0f);
          }
        }
      }
    };
    for (int64_t r = r0; r < r0 + h; ++r) emit(r, r + h);
    for (int64_t r = r0 + 2 * h; r < r1; ++r) emit(r, -1);
  };
  const int64_t chunks = std::min<int64_t>(kChunksPerThread * num_threads(), n / grain);
  parallel_chunks(n, std::max<int64_t>(1, chunks), body);
}

}  // namespace pg::kernels
