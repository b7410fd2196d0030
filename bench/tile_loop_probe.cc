// The ceiling of the AMX prefill products' inner loop (src/kernels/amx_gemm.cc) on this
// machine, against the roofline's peak. That loop runs a 2 x 2 block of tile products per
// step of 32 columns of K: it loads two tiles of weights and two of x (1 KiB each) for four
// tdpbf16ps. The roofline's probe (kernels/roofline.h) runs the same four products on tiles
// that never leave the registers. Cases, one thread each, every one timed between two
// probes (AMX's throughput on a shared machine varies 2x within seconds):
//   registers: no loads (the probe itself; about 1 by construction);
//   l1:        the loop over 16 KiB of weight tiles and 16 KiB of x tiles (in L1);
//   l2:        the loop over a job's two weight blocks of 64 steps (128 KiB) and a pass of
//              18 blocks of x (1.1 MiB), as the products walk them for PaliGemma's 267
//              prompt rows (in L2), with each pair's four sums stored at its end.
// Every tile holds pseudo-random values as the roofline's probe does (not zeros, which AMX
// multiplies faster). Prints one JSON object: per case the median over rounds of its GFLOP/s and of
// its efficiency against the probes around it. The l2 case's efficiency bounds the prefill products
// from above, before any packing, stores or memory stalls; what the products reach is
// build/bench/prefill_efficiency's.
//   build/bench/tile_loop_probe [rounds >= 1]   (default 7)
#include <algorithm>
#include <chrono>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>
#include <vector>

#include "base/cpu.h"

#if defined(__AMX_TILE__) && defined(__AMX_BF16__)
#include <immintrin.h>

#include "base/memory.h"

namespace {

constexpr int64_t kTileBytes = 1024;
constexpr double kFlopsPerProduct = 2.0 * 16 * 16 * 32;

struct alignas(64) TileConfig {
  uint8_t palette = 1;
  uint8_t start_row = 0;
  uint8_t reserved[14] = {};
  uint16_t colsb[16] = {};
  uint8_t rows[16] = {};
};

void configure_tiles() {
  TileConfig config;
  for (int t = 0; t < 8; ++t) {
    config.colsb[t] = 64;
    config.rows[t] = 16;
  }
  asm volatile("ldtilecfg %0" : : "m"(config));  // (as amx_gemm.cc: GCC 12 drops the fill)
}

double seconds_since(std::chrono::steady_clock::time_point t0) {
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
}

// GFLOP/s of n rounds of four products on tiles held in registers (the first four tiles
// of `operands`).
double registers(const uint16_t* operands, int64_t n) {
  configure_tiles();
  _tile_loadd(4, operands, 64);
  _tile_loadd(5, operands + 512, 64);
  _tile_loadd(6, operands + 1024, 64);
  _tile_loadd(7, operands + 1536, 64);
  _tile_zero(0);
  _tile_zero(1);
  _tile_zero(2);
  _tile_zero(3);
  const auto t0 = std::chrono::steady_clock::now();
  for (int64_t i = 0; i < n; ++i) {
    _tile_dpbf16ps(0, 4, 6);
    _tile_dpbf16ps(1, 4, 7);
    _tile_dpbf16ps(2, 5, 6);
    _tile_dpbf16ps(3, 5, 7);
  }
  const double t = seconds_since(t0);
  _tile_release();
  return 4.0 * static_cast<double>(n) * kFlopsPerProduct / t / 1e9;
}

// GFLOP/s of `jobs` passes of the products' loop: two weight blocks of `steps` tiles each
// (w: block i's step s at (i * steps + s) tiles) over x_blocks blocks of x (block b's step
// s at (b * steps + s) tiles) in pairs, each pair's four sums stored at its end.
double loop(const uint16_t* w, const uint16_t* x, int64_t steps, int64_t x_blocks, int64_t jobs,
            float* c) {
  configure_tiles();
  const int64_t tile = kTileBytes / 2;  // elements
  int64_t products = 0;
  const auto t0 = std::chrono::steady_clock::now();
  for (int64_t j = 0; j < jobs; ++j) {
    for (int64_t b = 0; b < x_blocks; b += 2) {
      _tile_zero(0);
      _tile_zero(1);
      _tile_zero(2);
      _tile_zero(3);
      const uint16_t* x0 = x + b * steps * tile;
      const uint16_t* x1 = x0 + steps * tile;
      for (int64_t s = 0; s < steps; ++s) {
        _tile_loadd(4, w + s * tile, 64);
        _tile_loadd(5, w + (steps + s) * tile, 64);
        _tile_loadd(6, x0 + s * tile, 64);
        _tile_loadd(7, x1 + s * tile, 64);
        _tile_dpbf16ps(0, 4, 6);
        _tile_dpbf16ps(1, 4, 7);
        _tile_dpbf16ps(2, 5, 6);
        _tile_dpbf16ps(3, 5, 7);
      }
      _tile_stored(0, c, 64);
      _tile_stored(1, c + 256, 64);
      _tile_stored(2, c + 512, 64);
      _tile_stored(3, c + 768, 64);
      products += 4 * steps;
    }
  }
  const double t = seconds_since(t0);
  _tile_release();
  return static_cast<double>(products) * kFlopsPerProduct / t / 1e9;
}

double median(std::vector<double> v) {
  std::sort(v.begin(), v.end());
  return v[v.size() / 2];
}

// The cases' medians as JSON on stdout.
int run(int64_t rounds) {
  if (!pg::amx_enabled()) {
    std::printf("{\"skipped\": \"AMX tiles cannot run in this process\"}\n");
    return 0;
  }
  struct Case {
    const char* name;
    int64_t steps, x_blocks, jobs;  // jobs: about 0.1 s of products at 1 TFLOP/s
  };
  const Case cases[] = {{"l1", 8, 2, 100000}, {"l2", 64, 18, 1000}};
  pg::LineAlignedVector<uint16_t> w(2 * 64 * kTileBytes / 2), x(18 * 64 * kTileBytes / 2);
  // Values as the roofline's probe takes them (amx_gemm.cc): bf16 of random sign and
  // mantissa, magnitudes 2^-4 to 1 (AMX multiplies zeros faster than real values).
  uint32_t state = 12345;
  for (auto* buffer : {&w, &x}) {
    for (uint16_t& e : *buffer) {
      state = state * 1664525u + 1013904223u;
      const uint32_t bits = state >> 16;
      e = static_cast<uint16_t>((bits & 0x807f) | ((123 + (bits >> 7) % 4) << 7));
    }
  }
  alignas(64) static float c[1024];
  const int64_t probe_rounds = 400000;
  std::vector<double> probe_runs, gflops[3], efficiency[3];
  for (int64_t r = 0; r < rounds; ++r) {
    for (int i = 0; i < 3; ++i) {
      const double before = registers(w.data(), probe_rounds);
      const double g = i == 0 ? registers(w.data(), probe_rounds)
                              : loop(w.data(), x.data(), cases[i - 1].steps, cases[i - 1].x_blocks,
                                     cases[i - 1].jobs, c);
      const double after = registers(w.data(), probe_rounds);
      probe_runs.push_back(before);
      probe_runs.push_back(after);
      gflops[i].push_back(g);
      efficiency[i].push_back(g / ((before + after) / 2));
    }
  }
  const char* names[3] = {"registers", cases[0].name, cases[1].name};
  const int64_t weight_kib[3] = {0, 2 * cases[0].steps, 2 * cases[1].steps};
  const int64_t x_kib[3] = {0, cases[0].x_blocks * cases[0].steps,
                            cases[1].x_blocks * cases[1].steps};
  std::printf("{\"threads\": 1, \"rounds\": %lld, \"probe_gflops\": %.1f, \"cases\": [",
              static_cast<long long>(rounds), median(probe_runs));
  for (int i = 0; i < 3; ++i) {
    std::printf(
        "%s\n  {\"name\": \"%s\", \"weights_kib\": %lld, \"x_kib\": %lld, "
        "\"gflops\": %.1f, \"efficiency\": %.3f}",
        i == 0 ? "" : ",", names[i], static_cast<long long>(weight_kib[i]),
        static_cast<long long>(x_kib[i]), median(gflops[i]), median(efficiency[i]));
  }
  std::printf("\n]}\n");
  return 0;
}

}  // namespace

#else

namespace {
int run(int64_t) {
  std::printf("{\"skipped\": \"needs AMX tiles (a build for x86-64 with AMX-BF16)\"}\n");
  return 0;
}
}  // namespace

#endif

int main(int argc, char** argv) {
  auto fail = [](const char* what, const char* got) {
    std::fprintf(stderr, "tile_loop_probe: %s '%s'\nusage: tile_loop_probe [rounds >= 1]\n", what,
                 got);
    return 2;
  };
  if (argc > 2) return fail("too many arguments, starting at", argv[2]);
  int64_t rounds = 7;
  if (argc > 1) {
    char* end = nullptr;
    rounds = std::strtoll(argv[1], &end, 10);
    if (end == argv[1] || *end != '\0' || rounds < 1 || rounds > 1000)
      return fail("rounds must be a whole number from 1 to 1000, not", argv[1]);
  }
  return run(rounds);
}
