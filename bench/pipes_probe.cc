// Which instructions compete with vpdpbusd for the same execution pipes: the bound on the
// int8 x int8 prefill tile (src/kernels/quant_gemm.cc), which per block of 32 issues 96
// vpdpbusd and, for the block's two scales, 12 vpsllvd (x's power of two), 12 vcvtdq2ps
// and 12 vfmadd231ps (the weight's scale), plus 12 register moves, 48 broadcasts and 16
// vector loads. (Before session 17 it took 12 vmulps in place of the shifts.)
//
// Each case is a loop of 12 independent vpdpbusd (12 accumulators, inputs that never
// change) plus a few instructions of one kind, in assembly so that the compiler adds
// nothing; `slots` is what one added instruction costs in vpdpbusd issue slots:
// (t_case / t_pure - 1) * 12 / added. 0 means it runs on other pipes (free beside the
// products), 1 that it takes a vpdpbusd slot. Prints one JSON object:
//   build/bench/pipes_probe
// On Zen 5 (2026-11-29): vfmadd231ps and vmulps cost 1.0 slot each; vcvtdq2ps, vpaddd,
// register moves, loads and broadcasts about 0; so the tile's scale work bounds it at
// 96 / (96 + 24) = 80% of the int8 peak, before any memory stall. On Zen 4 (2026-12-06,
// EPYC family 0x19 model 0x11): the same, and vpsllvd costs about 0 too, so today's tile
// (12 FMAs per 96 vpdpbusd) is bound at 96 / 108 = 89% (`tile_bound`).
// Session 22 added vaddps, vscalefps (free on Zen 4: a float add and a scaling by a power
// of two beside the products) and vpmulld (1.0 slot: an integer multiply is no way around
// the float one), and the density of free instructions the pipes take: `free_9` (9
// vpsllvd/vpaddd/vcvtdq2ps/vscalefps/vaddps per 12 vpdpbusd) cost nothing on Zen 4,
// `free_12` (12 per 12) about 8% (0.08 slot each). So a tile that replaces the multiply-add
// with free work has at most 9 free instructions per 12 products; a weight scale made of
// two powers of two (2 shifts, an add, the conversion, a vscalefps and a vaddps per block
// and accumulator: 9 per 12) measured 7-8% slower than today's in the real tile, where
// loads, broadcasts and moves share the same dispatch.
#include <algorithm>
#include <chrono>
#include <cstdint>
#include <cstdio>

#if defined(__AVX512VNNI__) && defined(__GNUC__) && defined(__x86_64__)
namespace {

alignas(64) char g_buf[4096];

#define CLOBBERS                                                                                \
  "xmm0", "xmm1", "xmm2", "xmm3", "xmm4", "xmm5", "xmm6", "xmm7", "xmm8", "xmm9", "xmm10",      \
      "xmm11", "xmm12", "xmm13", "xmm14", "xmm15", "xmm16", "xmm17", "xmm18", "xmm19", "xmm20", \
      "xmm21", "xmm22", "cc", "memory"
// 12 vpdpbusd: accumulators zmm0-11, inputs zmm16-20.
#define DP12                               \
  "vpdpbusd %%zmm16, %%zmm18, %%zmm0\n\t"  \
  "vpdpbusd %%zmm17, %%zmm18, %%zmm1\n\t"  \
  "vpdpbusd %%zmm16, %%zmm19, %%zmm2\n\t"  \
  "vpdpbusd %%zmm17, %%zmm19, %%zmm3\n\t"  \
  "vpdpbusd %%zmm16, %%zmm20, %%zmm4\n\t"  \
  "vpdpbusd %%zmm17, %%zmm20, %%zmm5\n\t"  \
  "vpdpbusd %%zmm16, %%zmm18, %%zmm6\n\t"  \
  "vpdpbusd %%zmm17, %%zmm18, %%zmm7\n\t"  \
  "vpdpbusd %%zmm16, %%zmm19, %%zmm8\n\t"  \
  "vpdpbusd %%zmm17, %%zmm19, %%zmm9\n\t"  \
  "vpdpbusd %%zmm16, %%zmm20, %%zmm10\n\t" \
  "vpdpbusd %%zmm17, %%zmm20, %%zmm11\n\t"
#define LOOP(EXTRA) \
  asm volatile("1:\n\t" DP12 EXTRA "dec %0\n\tjnz 1b\n\t" : "+r"(n) : "r"(p) : CLOBBERS)

// One case: the 12 products plus `extra`. Added instructions write only zmm12-15 and
// zmm21-22, never the products' inputs, so no product waits on them.
#define CASE(name, extra) \
  void name(int64_t n, char* p) { LOOP(extra); }
CASE(pure, "")
// The tile's step: two 64-byte loads of x and six 4-byte broadcasts of weights (into the
// products' inputs, as in the tile).
CASE(loads,
     "vmovdqu64 (%1), %%zmm16\n\tvmovdqu64 64(%1), %%zmm17\n\t"
     "vpbroadcastd 128(%1), %%zmm18\n\tvpbroadcastd 132(%1), %%zmm19\n\t"
     "vpbroadcastd 136(%1), %%zmm20\n\tvpbroadcastd 140(%1), %%zmm18\n\t"
     "vpbroadcastd 144(%1), %%zmm19\n\tvpbroadcastd 148(%1), %%zmm20\n\t")
CASE(moves,
     "vmovdqa32 %%zmm12, %%zmm13\n\tvmovdqa32 %%zmm12, %%zmm14\n\t"
     "vmovdqa32 %%zmm12, %%zmm15\n\tvmovdqa32 %%zmm13, %%zmm21\n\t")
CASE(cvt,
     "vcvtdq2ps %%zmm12, %%zmm13\n\tvcvtdq2ps %%zmm12, %%zmm14\n\t"
     "vcvtdq2ps %%zmm12, %%zmm15\n\tvcvtdq2ps %%zmm12, %%zmm21\n\t")
CASE(fma_mul,
     "vfmadd231ps %%zmm14, %%zmm15, %%zmm12\n\tvfmadd231ps %%zmm14, %%zmm15, %%zmm13\n\t"
     "vmulps %%zmm14, %%zmm15, %%zmm21\n\tvmulps %%zmm14, %%zmm15, %%zmm22\n\t")
CASE(shift,
     "vpsllvd %%zmm12, %%zmm13, %%zmm14\n\tvpsllvd %%zmm12, %%zmm13, %%zmm15\n\t"
     "vpsllvd %%zmm12, %%zmm13, %%zmm21\n\tvpsllvd %%zmm12, %%zmm13, %%zmm22\n\t")
CASE(fadd,
     "vaddps %%zmm12, %%zmm13, %%zmm14\n\tvaddps %%zmm12, %%zmm13, %%zmm15\n\t"
     "vaddps %%zmm12, %%zmm13, %%zmm21\n\tvaddps %%zmm12, %%zmm13, %%zmm22\n\t")
CASE(scalef,
     "vscalefps %%zmm12, %%zmm13, %%zmm14\n\tvscalefps %%zmm12, %%zmm13, %%zmm15\n\t"
     "vscalefps %%zmm12, %%zmm13, %%zmm21\n\tvscalefps %%zmm12, %%zmm13, %%zmm22\n\t")
CASE(int_mul,
     "vpmulld %%zmm12, %%zmm13, %%zmm14\n\tvpmulld %%zmm12, %%zmm13, %%zmm15\n\t"
     "vpmulld %%zmm12, %%zmm13, %%zmm21\n\tvpmulld %%zmm12, %%zmm13, %%zmm22\n\t")
// One accumulator's scaling by two powers of two: two shifts and their sum, converted,
// scaled by a power of two and added to a float sum (6 free instructions).
#define SCALE6(ACC)                                                            \
  "vpsllvd %%zmm12, %%zmm13, %%zmm14\n\tvpsllvd %%zmm12, %%zmm13, %%zmm15\n\t" \
  "vpaddd %%zmm14, %%zmm15, %%zmm14\n\tvcvtdq2ps %%zmm14, %%zmm15\n\t"         \
  "vscalefps %%zmm12, %%zmm15, %%zmm15\n\tvaddps %%zmm15, " ACC ", " ACC "\n\t"
CASE(free_9, SCALE6("%%zmm21") "vpsllvd %%zmm12, %%zmm13, %%zmm14\n\t"
     "vpsllvd %%zmm12, %%zmm13, %%zmm15\n\tvpaddd %%zmm14, %%zmm15, %%zmm22\n\t")
CASE(free_12, SCALE6("%%zmm21") SCALE6("%%zmm22"))
CASE(int_add,
     "vpaddd %%zmm12, %%zmm13, %%zmm14\n\tvpaddd %%zmm12, %%zmm13, %%zmm15\n\t"
     "vpaddd %%zmm12, %%zmm13, %%zmm21\n\tvpaddd %%zmm12, %%zmm13, %%zmm22\n\t")

// Best of 7 runs of 2e7 iterations: nanoseconds per iteration.
double time_ns(void (*fn)(int64_t, char*)) {
  constexpr int64_t kIters = 20'000'000;
  double best = 1e30;
  for (int r = 0; r < 7; ++r) {
    const auto t0 = std::chrono::steady_clock::now();
    fn(kIters, g_buf);
    const double s = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    best = std::min(best, s / kIters * 1e9);
  }
  return best;
}

}  // namespace

int main() {
  const double base = time_ns(pure);
  struct Case {
    const char* name;
    void (*fn)(int64_t, char*);
    int added;
  } cases[] = {{"loads_and_broadcasts", loads, 8},
               {"register_moves", moves, 4},
               {"vcvtdq2ps", cvt, 4},
               {"vfmadd231ps_and_vmulps", fma_mul, 4},
               {"vpsllvd", shift, 4},
               {"vpaddd", int_add, 4},
               {"vaddps", fadd, 4},
               {"vscalefps", scalef, 4},
               {"vpmulld", int_mul, 4},
               {"free_9", free_9, 9},
               {"free_12", free_12, 12}};
  std::printf("{\"vpdpbusd_x12_ns\": %.4f", base);
  double fma_slots = 0, cvt_slots = 0, shift_slots = 0;
  for (const Case& c : cases) {
    const double t = time_ns(c.fn);
    const double slots = (t / base - 1) * 12 / c.added;
    if (c.fn == fma_mul) fma_slots = std::max(0.0, slots);
    if (c.fn == cvt) cvt_slots = std::max(0.0, slots);
    if (c.fn == shift) shift_slots = std::max(0.0, slots);
    std::printf(", \"%s\": {\"ns\": %.4f, \"slots\": %.3f}", c.name, t, slots);
  }
  // The tile: 96 vpdpbusd and 12 each of vpsllvd, vcvtdq2ps and vfmadd231ps per block.
  std::printf(", \"tile_bound\": %.3f}\n",
              96.0 / (96.0 + 12.0 * (fma_slots + cvt_slots + shift_slots)));
  return 0;
}
#else
int main() {
  std::printf("{\"skipped\": \"needs AVX512-VNNI (x86-64, GCC or Clang)\"}\n");
  return 0;
}
#endif
