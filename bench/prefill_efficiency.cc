// The prefill products of one decoder layer, each timed between two short probes of the
// peak of the unit it runs on, so that a shared machine's changing speed (AMX's throughput
// here varies 2x within seconds) cancels out: efficiency = the product's GFLOP/s over the
// mean of the probes around it. Prints JSON: for each product its shape, and the median
// over rounds of its GFLOP/s, of the probes' peak and of the efficiency (and the best
// efficiency). Comparing two builds: run each a few times, alternating, and compare the
// efficiencies rather than the times.
//   build/bench/prefill_efficiency [bf16|q8|q4|w8a8] [gemma|gemma2] [m >= 1] [rounds >= 1]
//   (defaults bf16 gemma 267 10)
// gemma: PaliGemma 3B's decoder (width 2048, q 2048, k and v 256, MLP 16384); gemma2:
// PaliGemma 2 3B's (width 2304, q 2048, k and v 1024, MLP 9216). The products are the
// fast kernel table's: qkv (matmul_many), o (matmul), gate_up (matmul_gelu_mul) and down
// (matmul). The peak is AMX's bf16 tile product where AMX runs (the bf16 mode's tiles,
// and q8 / q4 dequantized to bf16 for them) or its int8 one (w8a8: q8 with one scale per
// row), else AVX-512's bf16 (bf16) or int8 (q8, q4, w8a8) dot products.
#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <random>
#include <string>
#include <vector>

#include "base/cpu.h"
#include "base/parallel.h"
#include "kernels/kernels.h"
#include "kernels/quant.h"
#include "kernels/roofline.h"
#include "tensor/dtype.h"

namespace {

using pg::MatrixView;

double median(std::vector<double> v) {
  std::sort(v.begin(), v.end());
  return v.empty() ? 0.0 : v[v.size() / 2];
}

// A random weight matrix [n, k] in the run's format; `store` and `quant` keep its data.
struct Matrices {
  std::mt19937 rng{7};
  std::vector<std::vector<uint16_t>> store;
  std::vector<pg::kernels::QuantizedMatrix> quant;
  MatrixView make(const std::string& dtype, int64_t n, int64_t k) {
    std::uniform_real_distribution<float> u(-0.05f, 0.05f);
    if (dtype == "bf16") {
      store.emplace_back(static_cast<size_t>(n * k));
      for (auto& e : store.back()) e = pg::f32_to_bf16(u(rng));
      MatrixView v{pg::DType::kBF16, store.back().data(), n, k, nullptr};
      v.low_precision = true;
      return v;
    }
    std::vector<float> w(static_cast<size_t>(n * k));
    for (auto& e : w) e = u(rng);
    const MatrixView f{pg::DType::kF32, w.data(), n, k, nullptr};
    quant.push_back(dtype == "q8"     ? pg::kernels::quantize_q8(f)
                    : dtype == "w8a8" ? pg::kernels::quantize_q8_rows(f)
                                      : pg::kernels::quantize_q4(f));
    return quant.back().view();
  }
};

}  // namespace

int main(int argc, char** argv) {
  auto fail = [](const char* what, const char* got) {
    std::fprintf(stderr,
                 "prefill_efficiency: %s '%s'\nusage: prefill_efficiency [bf16|q8|q4|w8a8] "
                 "[gemma|gemma2] [m >= 1] [rounds >= 1]\n",
                 what, got);
    return 2;
  };
  if (argc > 5) return fail("too many arguments, starting at", argv[5]);
  const std::string dtype = argc > 1 ? argv[1] : "bf16";
  const std::string model = argc > 2 ? argv[2] : "gemma";
  if (dtype != "bf16" && dtype != "q8" && dtype != "q4" && dtype != "w8a8")
    return fail("unknown dtype (bf16, q8, q4 or w8a8)", argv[1]);
  if (model != "gemma" && model != "gemma2")
    return fail("unknown model (gemma or gemma2)", argv[2]);
  char* end = nullptr;
  const long m = argc > 3 ? std::strtol(argv[3], &end, 10) : 267;
  if (argc > 3 && (*end != '\0' || m < 1 || m > 65536))
    return fail("m must be a whole number from 1 to 65536, not", argv[3]);
  const long rounds = argc > 4 ? std::strtol(argv[4], &end, 10) : 10;
  if (argc > 4 && (*end != '\0' || rounds < 1 || rounds > 1000))
    return fail("rounds must be a whole number from 1 to 1000, not", argv[4]);

  const bool gemma2 = model == "gemma2";
  const int64_t d = gemma2 ? 2304 : 2048, q = 2048, kv = gemma2 ? 1024 : 256,
                f = gemma2 ? 9216 : 16384;
  Matrices mats;
  mats.quant.reserve(8);
  mats.store.reserve(8);
  const MatrixView wq = mats.make(dtype, q, d), wk = mats.make(dtype, kv, d),
                   wv = mats.make(dtype, kv, d), wo = mats.make(dtype, d, q),
                   gate = mats.make(dtype, f, d), up = mats.make(dtype, f, d),
                   down = mats.make(dtype, d, f);
  std::mt19937 rng(11);
  std::uniform_real_distribution<float> u(-1.0f, 1.0f);
  std::vector<float> x(static_cast<size_t>(m * f)), h(static_cast<size_t>(m * f));
  for (auto& e : x) e = u(rng);
  std::vector<float> yq(static_cast<size_t>(m * q)), yk(static_cast<size_t>(m * kv)),
      yv(static_cast<size_t>(m * kv)), yd(static_cast<size_t>(m * d));
  const pg::kernels::KernelTable& kt = pg::kernels::fast_kernels();

  struct Call {
    const char* name;
    int64_t n, k;
    double flops;
  };
  const Call calls[4] = {{"qkv", q + 2 * kv, d, 2.0 * m * d * (q + 2 * kv)},
                         {"o", d, q, 2.0 * m * q * d},
                         {"gate_up", 2 * f, d, 4.0 * m * f * d},
                         {"down", d, f, 2.0 * m * f * d}};
  auto run = [&](int i) {
    switch (i) {
      case 0: {
        const pg::kernels::MatmulOutput out[3] = {
            {wq, nullptr, yq.data()}, {wk, nullptr, yk.data()}, {wv, nullptr, yv.data()}};
        kt.matmul_many(x.data(), m, out, 3);
        break;
      }
      case 1: kt.matmul(x.data(), m, wo, nullptr, yd.data()); break;
      case 2: kt.matmul_gelu_mul(x.data(), m, gate, up, h.data()); break;
      default: kt.matmul(h.data(), m, down, nullptr, yd.data()); break;
    }
  };
  const bool amx = pg::amx_enabled();
  auto peak = [&]() {
    const pg::kernels::Roofline r = pg::kernels::measure_roofline(0.03, 0);
    if (amx) return dtype == "w8a8" ? r.amx_int8_gops : r.amx_bf16_gflops;
    return dtype == "bf16" ? r.bf16_gflops : r.int8_gops;
  };
  std::vector<double> gflops[4], peaks[4], eff[4];
  for (int i = 0; i < 4; ++i) run(i);  // (first touches and buffers out of the timing)
  for (long r = 0; r < rounds; ++r) {
    for (int i = 0; i < 4; ++i) {
      const double p0 = peak();
      const auto t0 = std::chrono::steady_clock::now();
      run(i);
      const double t = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
      const double p1 = peak();
      const double g = calls[i].flops / t / 1e9;
      gflops[i].push_back(g);
      peaks[i].push_back((p0 + p1) / 2);
      eff[i].push_back(g / ((p0 + p1) / 2));
    }
  }
  std::printf(
      "{\"dtype\": \"%s\", \"model\": \"%s\", \"m\": %ld, \"rounds\": %ld, \"threads\": %d, "
      "\"peak_unit\": \"%s\", \"products\": [",
      dtype.c_str(), model.c_str(), m, rounds, pg::num_threads(),
      amx ? (dtype == "w8a8" ? "amx_int8" : "amx_bf16")
          : (dtype == "bf16" ? "avx512_bf16" : "avx512_int8"));
  for (int i = 0; i < 4; ++i) {
    std::printf(
        "%s\n  {\"name\": \"%s\", \"n\": %ld, \"k\": %ld, \"gflops\": %.1f, "
        "\"peak_gflops\": %.1f, \"efficiency\": %.3f, \"best_efficiency\": %.3f}",
        i == 0 ? "" : ",", calls[i].name, static_cast<long>(calls[i].n),
        static_cast<long>(calls[i].k), median(gflops[i]), median(peaks[i]), median(eff[i]),
        *std::max_element(eff[i].begin(), eff[i].end()));
  }
  std::printf("\n]}\n");
  return 0;
}
