#include "kernels/roofline.h"

#include <omp.h>

#include <algorithm>
#include <chrono>
#include <cstdlib>
#include <cstring>
#include <memory>
#include <vector>

#include "base/cpu.h"
#include "base/parallel.h"
#include "kernels/amx_gemm.h"
#include "kernels/quant.h"

namespace pg::kernels {
namespace {

using Clock = std::chrono::steady_clock;

double seconds(Clock::time_point t0) {
  return std::chrono::duration<double>(Clock::now() - t0).count();
}

// Runs body(iterations) on every thread, window after window, for `budget` seconds (and at
// least three windows); returns the best window's ops per second, where each call of
// body(n) performs n * ops_per_iter operations. A window is one call on every thread at
// once, timed to the slowest: on a shared machine a burst of someone else's work slows the
// windows it overlaps, and the best of ~20 (as for the bandwidth passes) measures the
// cores rather than the neighbours; one average over the whole budget read 10-25% low
// while the machine was busy (bf16 476-489 against 600-650 GFLOP/s in quiet runs).
template <typename Body>
double rate(double budget, double ops_per_iter, Body body) {
  const int threads = num_threads();
  int64_t iters = 1 << 12;
  // Calibrate on one thread: a window of about budget / 20.
  for (;;) {
    const auto t0 = Clock::now();
    body(iters);
    if (seconds(t0) > budget / 20 || iters > (int64_t{1} << 40)) break;
    iters *= 2;
  }
  double best = 0;
  const auto t_all = Clock::now();
  for (int window = 0; window < 3 || seconds(t_all) < budget; ++window) {
    const auto t0 = Clock::now();
#pragma omp parallel num_threads(threads)
    body(iters);
    best = std::max(best, static_cast<double>(threads) * static_cast<double>(iters) * ops_per_iter /
                              seconds(t0));
  }
  return best;
}

// The probe loops are written in assembly: 16 independent accumulators (zmm0-15, enough
// to cover latency x throughput on Zen 4 and Zen 5: 2 ports x up to 6 cycles) of one
// instruction whose inputs (zmm16, zmm17) never change, and nothing else but the loop
// counter. Compiled from intrinsics, GCC 12 kept vpdpbusd's and vdpbf16ps's accumulators
// in a stack array (a load and a store around every instruction) or copied all of them
// each iteration: on Zen 5 that read 300 GFLOP/s bf16 and 620 GOP/s int8 against the
// 830 and 1650 that these loops reach (2 threads), and every bf16 and int8 fraction of
// roofline came out 2.7 times too flattering.
#if defined(__AVX512F__) && defined(__GNUC__) && defined(__x86_64__)
#define PG_R16(op)                                                                               \
  op(0) op(1) op(2) op(3) op(4) op(5) op(6) op(7) op(8) op(9) op(10) op(11) op(12) op(13) op(14) \
      op(15)
#define PG_ZERO(i) "vpxord %%zmm" #i ", %%zmm" #i ", %%zmm" #i "\n\t"
#define PG_PROBE_LOOP(INSN) \
  asm volatile(PG_R16(PG_ZERO) "vpxord %%zmm16, %%zmm16, %%zmm16\n\t"                            \
                               "vpxord %%zmm17, %%zmm17, %%zmm17\n\t"                            \
                               "1:\n\t" PG_R16(INSN) "dec %0\n\t"                                \
                               "jnz 1b\n\t"                                                      \
               : "+r"(n)                                                                        \
               :                                                                                \
               : "xmm0", "xmm1", "xmm2", "xmm3", "xmm4", "xmm5", "xmm6", "xmm7", "xmm8", "xmm9",   \
                 "xmm10", "xmm11", "xmm12", "xmm13", "xmm14", "xmm15", "xmm16", "xmm17", "cc")
constexpr double kChains = 16;
#define PG_FMA(i) "vfmadd231ps %%zmm16, %%zmm17, %%zmm" #i "\n\t"
// 16 chains of vfmadd231ps: 16 lanes x 2 FLOPs each.
__attribute__((noinline)) void fma_loop(int64_t n) {
  if (n > 0) PG_PROBE_LOOP(PG_FMA);
}
#define PG_AVX512_PROBES 1
#endif

#if defined(PG_AVX512_PROBES) && defined(__AVX512BF16__)
#define PG_DPBF16(i) "vdpbf16ps %%zmm16, %%zmm17, %%zmm" #i "\n\t"
// 16 chains of vdpbf16ps: 32 bf16 multiply-adds = 64 FLOPs each.
__attribute__((noinline)) void bf16_loop(int64_t n) {
  if (n > 0) PG_PROBE_LOOP(PG_DPBF16);
}
#endif

#if defined(PG_AVX512_PROBES) && defined(__AVX512VNNI__)
#define PG_DPBUSD(i) "vpdpbusd %%zmm16, %%zmm17, %%zmm" #i "\n\t"
// 16 chains of vpdpbusd: 64 u8 x s8 multiply-adds = 128 ops each.
__attribute__((noinline)) void int8_loop(int64_t n) {
  if (n > 0) PG_PROBE_LOOP(PG_DPBUSD);
}
#endif

#if !defined(PG_AVX512_PROBES)
// Builds without AVX-512 (PG_NATIVE=OFF, or a CPU without it): the float32 peak from a
// loop of 12 independent multiply-add chains on the build's widest vectors (fused where it
// has FMA), each accumulator held in a register by an empty asm every iteration.
#if defined(__AVX__)
constexpr int kProbeLanes = 8;
#else
constexpr int kProbeLanes = 4;
#endif
using ProbeVector = float __attribute__((vector_size(4 * kProbeLanes)));
constexpr double kPortableChains = 12;
__attribute__((noinline)) void fma_loop_portable(int64_t n) {
  ProbeVector x, y;
  for (int i = 0; i < kProbeLanes; ++i) x[i] = 1.0f, y[i] = 0x1p-30f;
  asm("" : "+x"(x), "+x"(y));
  ProbeVector a0 = y, a1 = y, a2 = y, a3 = y, a4 = y, a5 = y, a6 = y, a7 = y, a8 = y, a9 = y,
              a10 = y, a11 = y;
  for (int64_t i = 0; i < n; ++i) {
    a0 = a0 * x + y, a1 = a1 * x + y, a2 = a2 * x + y, a3 = a3 * x + y;
    a4 = a4 * x + y, a5 = a5 * x + y, a6 = a6 * x + y, a7 = a7 * x + y;
    a8 = a8 * x + y, a9 = a9 * x + y, a10 = a10 * x + y, a11 = a11 * x + y;
    asm volatile("" : "+x"(a0), "+x"(a1), "+x"(a2), "+x"(a3), "+x"(a4), "+x"(a5));
    asm volatile("" : "+x"(a6), "+x"(a7), "+x"(a8), "+x"(a9), "+x"(a10), "+x"(a11));
  }
}
#endif

volatile int64_t g_sink_i;

}  // namespace

Roofline measure_roofline(double seconds_each, int64_t bandwidth_bytes) {
  Roofline r;
#if defined(PG_AVX512_PROBES)
  r.f32_gflops = rate(seconds_each, kChains * 16 * 2, fma_loop) / 1e9;
#else
  r.f32_gflops = rate(seconds_each, kPortableChains * kProbeLanes * 2, fma_loop_portable) / 1e9;
#endif
#if defined(PG_AVX512_PROBES) && defined(__AVX512BF16__)
  r.bf16_gflops = rate(seconds_each, kChains * 64, bf16_loop) / 1e9;
#endif
#if defined(PG_AVX512_PROBES) && defined(__AVX512VNNI__)
  r.int8_gops = rate(seconds_each, kChains * 128, int8_loop) / 1e9;
#endif

  if (amx_products_run()) {
    // A round: four products of 16 x 16 outputs, 32 bf16 or 64 int8 multiply-adds each.
    r.amx_bf16_gflops =
        rate(seconds_each, 4.0 * 16 * 16 * 32 * 2, [](int64_t n) { amx_bf16_loop(n); }) / 1e9;
    r.amx_int8_gops =
        rate(seconds_each, 4.0 * 16 * 16 * 64 * 2, [](int64_t n) { amx_int8_loop(n); }) / 1e9;
  }
  if (bandwidth_bytes <= 0) return r;
  // Bandwidth: read a buffer much larger than the caches, each thread its own part front
  // to back, a cache line per 512-bit load (four independent sums, so the adds never wait);
  // the best of at least six passes. Passes take turns between reading a thread's part as
  // one stream, as two (its halves side by side), and as two with the decode products'
  // software prefetch (prefetch_decode_stream, quant.h): on Zen 4 two streams per thread
  // far apart read 10-15% faster (2 threads, 512 MiB: 71-73 against 60-66 GB/s), on an
  // Intel Emerald Rapids the prefetched passes 5-10% faster than plain ones (session 31,
  // three runs: 34.3 against 32.8, 29.6 against 26.7, 29.1 against 27.8 GB/s), and the
  // decode products read that way (fast.cc, quant.cc), so the roofline is the fastest of
  // the three.
  constexpr int64_t kLine = 64;
  const int64_t lines = bandwidth_bytes / kLine;
  // (Not value-initialized, so the loop below is each page's first touch, on its thread.)
  const auto storage =
      std::make_unique_for_overwrite<int64_t[]>(static_cast<size_t>((lines + 1) * (kLine / 8)));
  // (the first 64-byte boundary: storage is 8-byte aligned, so a whole number of elements)
  const auto addr = reinterpret_cast<uintptr_t>(storage.get());
  int64_t* const buf = storage.get() + static_cast<int64_t>((kLine - addr % kLine) % kLine / 8);
  parallel_for(lines, 1 << 10, [&](int64_t b, int64_t e) {  // first touch on its thread
    for (int64_t i = b * 8; i < e * 8; ++i) buf[i] = i;
  });
  typedef int64_t i64x8 __attribute__((vector_size(64)));
  auto line = [&](int64_t i) {
    i64x8 v;
    std::memcpy(&v, buf + i * 8, sizeof(v));
    return v;
  };
  double best = 0;
  const auto t_all = Clock::now();
  for (int pass = 0; pass < 6 || seconds(t_all) < seconds_each; ++pass) {
    const bool two = pass % 3 != 0, prefetch = pass % 3 == 2;
    const auto t0 = Clock::now();
    int64_t total = 0;
    parallel_for(lines, 1 << 10, [&](int64_t b, int64_t e) {
      i64x8 s[4] = {};
      int64_t i = b;
      if (two) {  // lines b + j and b + h + j together
        const int64_t h = (e - b) / 2;
        for (; i + 2 <= b + h; i += 2) {
          if (prefetch) {
            for (const int64_t j : {i, i + 1, i + h, i + h + 1})
              prefetch_decode_stream(buf + j * 8);
          }
          s[0] += line(i);
          s[1] += line(i + 1);
          s[2] += line(i + h);
          s[3] += line(i + h + 1);
        }
        for (; i < b + h; ++i) s[0] += line(i) + line(i + h);
        i = b + 2 * h;
      } else {
        for (; i + 4 <= e; i += 4) {
          for (int u = 0; u < 4; ++u) s[u] += line(i + u);
        }
      }
      for (; i < e; ++i) s[0] += line(i);
      const i64x8 t = (s[0] + s[1]) + (s[2] + s[3]);
      int64_t sum = 0;
      for (int l = 0; l < 8; ++l) sum += t[l];
#pragma omp atomic
      total += sum;
    });
    g_sink_i = total;
    best = std::max(best, static_cast<double>(lines * kLine) / seconds(t0) / 1e9);
  }
  return r.bandwidth_gbs = best, r;
}

}  // namespace pg::kernels
