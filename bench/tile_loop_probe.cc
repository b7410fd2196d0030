// The ceiling of the AMX prefill products' inner loop (src/kernels/amx_gemm.cc) on this
// machine, against the roofline's peak. That loop runs a 2 x 2 block of tile products per
// step of 32 columns of K: it loads two tiles of weights and two of x (1 KiB each) for four
// tdpbf16ps. The roofline's probe (kernels/roofline.h) runs the same four products on tiles
// that never leave the registers. Cases, one thread each, every one timed between two
// probes (AMX's throughput on a shared machine varies 2x within seconds):
//   registers: no loads (the probe itself, amx_bf16_loop; about 1 by construction);
//   l1:        the loop (amx_bf16_loop_loaded) over 16 KiB of weight tiles and 16 KiB of x
//              tiles (in L1);
//   l2:        the loop over a job's two weight blocks of 64 steps (128 KiB) and a pass of
//              18 blocks of x (1.1 MiB), as the products walk them for PaliGemma's 267
//              prompt rows (in L2), with each pair's four sums stored at its end.
// Every tile holds the probes' pseudo-random values (fill_probe_values: not zeros, which AMX
// multiplies faster). Prints one JSON object: per case the median over rounds of its
// GFLOP/s and of its efficiency against the probes around it. The l2 case's efficiency
// bounds the prefill products from above, before any packing, stores or memory stalls;
// what the products reach is build/bench/prefill_efficiency's.
//   build/bench/tile_loop_probe [rounds >= 1]   (default 7)
#include <algorithm>
#include <chrono>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <vector>

#include "base/memory.h"
#include "kernels/amx_gemm.h"

namespace {

constexpr int64_t kTileElems = 512;  // bf16 per tile (16 rows of 64 bytes)
constexpr double kFlopsPerProduct = 2.0 * 16 * 16 * 32;

double seconds_since(std::chrono::steady_clock::time_point t0) {
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
}

// GFLOP/s of n rounds of the roofline's probe (four products on tiles in registers).
double registers(int64_t n) {
  const auto t0 = std::chrono::steady_clock::now();
  pg::kernels::amx_bf16_loop(n);
  return 4.0 * static_cast<double>(n) * kFlopsPerProduct / seconds_since(t0) / 1e9;
}

double median(std::vector<double> v) {
  std::sort(v.begin(), v.end());
  return v[v.size() / 2];
}

// The cases' medians as JSON on stdout.
int run(int64_t rounds) {
  if (!pg::kernels::amx_products_run()) {
    std::printf("{\"skipped\": \"AMX tiles cannot run in this build or process\"}\n");
    return 0;
  }
  struct Case {
    const char* name;
    int64_t steps, x_blocks, jobs;  // jobs: about 0.1 s of products at 1 TFLOP/s
  };
  const Case cases[] = {{"l1", 8, 2, 100000}, {"l2", 64, 18, 1000}};
  pg::LineAlignedVector<uint16_t> w(2 * 64 * kTileElems), x(18 * 64 * kTileElems);
  pg::kernels::fill_probe_values(w.data(), static_cast<int64_t>(w.size()));
  pg::kernels::fill_probe_values(x.data(), static_cast<int64_t>(x.size()));
  const int64_t probe_rounds = 400000;
  std::vector<double> probe_runs, gflops[3], efficiency[3];
  for (int64_t r = 0; r < rounds; ++r) {
    for (int i = 0; i < 3; ++i) {
      const double before = registers(probe_rounds);
      double g = 0;
      if (i == 0) {
        g = registers(probe_rounds);
      } else {
        const Case& c = cases[i - 1];
        const auto t0 = std::chrono::steady_clock::now();
        const int64_t products =
            pg::kernels::amx_bf16_loop_loaded(w.data(), x.data(), c.steps, c.x_blocks, c.jobs);
        g = static_cast<double>(products) * kFlopsPerProduct / seconds_since(t0) / 1e9;
      }
      const double after = registers(probe_rounds);
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
