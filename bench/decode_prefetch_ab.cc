// The q8/q4/bf16 decode products with and without software prefetch, compared in one process:
// passes over a stack of decoder layers' matrices (the model's shapes in its order, >= 512
// MiB so that nothing stays in cache), alternating A B B A, so that a shared machine's
// changing memory bandwidth weighs on both alike. Prints JSON: each mode's best and median
// GB/s and the median over neighbouring pairs of passes of (time with prefetch) / (time
// without): above 1, the products are faster without.
//   build/bench/decode_prefetch_ab [q8|q4|bf16] [gemma|gemma2] [passes >= 4]   (defaults q4 gemma2
//   32)
// (bf16: the bf16 mode's low-precision rows, dot products on vdpbf16ps.)
// gemma2: PaliGemma 2 3B (width 2304, q 2048, k and v 1024, MLP 9216); gemma: PaliGemma 3B
// (width 2048, k and v 256, MLP 16384).
#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <random>
#include <utility>
#include <vector>

#include "base/parallel.h"
#include "kernels/kernels.h"
#include "kernels/quant.h"

int main(int argc, char** argv) {
  // Arguments, each optional in order (defaults q4, gemma2, 32); anything else is an error
  // that names the argument, before any memory is taken.
  auto fail = [](const char* what, const char* got) {
    std::fprintf(
        stderr,
        "decode_prefetch_ab: %s '%s'\nusage: decode_prefetch_ab [q8|q4|bf16] [gemma|gemma2] "
        "[passes >= 4]\n",
        what, got);
    return 2;
  };
  if (argc > 4) return fail("too many arguments, starting at", argv[4]);
  const char* dtype = argc > 1 ? argv[1] : "q4";
  const char* layers = argc > 2 ? argv[2] : "gemma2";
  if (std::strcmp(dtype, "q8") != 0 && std::strcmp(dtype, "q4") != 0 &&
      std::strcmp(dtype, "bf16") != 0)
    return fail("unknown dtype (q8, q4 or bf16)", dtype);
  if (std::strcmp(layers, "gemma") != 0 && std::strcmp(layers, "gemma2") != 0)
    return fail("unknown layers (gemma or gemma2)", layers);
  int passes = 32;
  if (argc > 3) {
    char* end = nullptr;
    const long v = std::strtol(argv[3], &end, 10);
    if (end == argv[3] || *end != '\0' || v < 4 || v > 100000)
      return fail("passes must be a whole number from 4 to 100000, not", argv[3]);
    passes = static_cast<int>(v);
  }
  const bool q8 = std::strcmp(dtype, "q8") == 0, bf16 = std::strcmp(dtype, "bf16") == 0;
  const bool gemma2 = std::strcmp(layers, "gemma2") == 0;
  pg::set_num_threads(0);
  const int64_t d = gemma2 ? 2304 : 2048, q = 2048, kv = gemma2 ? 1024 : 256,
                f = gemma2 ? 9216 : 16384;
  const std::pair<int64_t, int64_t> shapes[] = {{q, d}, {kv, d}, {kv, d}, {d, q},
                                                {f, d}, {f, d},  {d, f}};
  // Random codes and equal scales: the products' speed does not depend on the values.
  std::mt19937 rng(1);
  std::vector<pg::kernels::QuantizedMatrix> mats;
  std::vector<std::vector<uint16_t>> dense;  // bf16
  std::vector<pg::MatrixView> views;
  int64_t bytes = 0;
  while (bytes < (int64_t{512} << 20)) {
    for (const auto& [n, k] : shapes) {
      if (bf16) {  // random bits of small values (exponents near 1), as weights are
        std::vector<uint16_t> w(static_cast<size_t>(n * k));
        for (auto& e : w) e = static_cast<uint16_t>(0x3c00 | (rng() & 0x83ff));
        bytes += static_cast<int64_t>(w.size() * sizeof(uint16_t));
        dense.push_back(std::move(w));
        pg::MatrixView v{pg::DType::kBF16, dense.back().data(), n, k, nullptr};
        v.low_precision = true;
        views.push_back(v);
        continue;
      }
      pg::kernels::QuantizedMatrix m;
      m.dtype = q8 ? pg::DType::kI8 : pg::DType::kU8;
      m.rows = n;
      m.cols = k;
      const int64_t nb = pg::quant_blocks(k);
      m.data.resize(static_cast<size_t>(n * nb * (q8 ? 32 : 16)));
      for (auto& b : m.data) b = static_cast<uint8_t>(rng());
      m.scales.assign(static_cast<size_t>(n * nb), 0.01f);
      bytes += static_cast<int64_t>(m.data.size() + m.scales.size() * sizeof(float));
      mats.push_back(std::move(m));
      views.push_back(mats.back().view());
      views.back().low_precision = true;
    }
  }
  std::vector<float> x(static_cast<size_t>(f)), y(static_cast<size_t>(f));
  for (size_t i = 0; i < x.size(); ++i) x[i] = std::sin(0.37f * static_cast<float>(i));
  const pg::kernels::KernelTable& table = pg::kernels::fast_kernels();
  std::vector<double> t[2];  // [prefetch]: seconds per pass
  for (int p = 0; p < passes; ++p) {
    const int mode = (p + p / 2) % 2;  // 0 1 1 0 0 1 1 0 ...
    pg::kernels::set_decode_prefetch(mode);
    const auto t0 = std::chrono::steady_clock::now();
    for (const pg::MatrixView& v : views) table.matmul(x.data(), 1, v, nullptr, y.data());
    const auto t1 = std::chrono::steady_clock::now();
    t[mode].push_back(std::chrono::duration<double>(t1 - t0).count());
  }
  pg::kernels::set_decode_prefetch(-1);
  std::vector<double> ratio;
  for (size_t i = 0; i < std::min(t[0].size(), t[1].size()); ++i)
    ratio.push_back(t[1][i] / t[0][i]);
  auto median = [](std::vector<double> v) {
    std::sort(v.begin(), v.end());
    return v[v.size() / 2];
  };
  const double gb = static_cast<double>(bytes) / 1e9;
  std::printf(
      "{\"dtype\": \"%s\", \"layers\": \"%s\", \"bytes\": %lld, \"passes\": %d, "
      "\"prefetch_gbps\": {\"best\": %.2f, \"median\": %.2f}, "
      "\"no_prefetch_gbps\": {\"best\": %.2f, \"median\": %.2f}, "
      "\"time_ratio_prefetch_over_none\": %.4f, \"default_prefetch\": %s}\n",
      dtype, gemma2 ? "gemma2" : "gemma", static_cast<long long>(bytes), passes,
      gb / *std::min_element(t[1].begin(), t[1].end()), gb / median(t[1]),
      gb / *std::min_element(t[0].begin(), t[0].end()), gb / median(t[0]), median(ratio),
      pg::kernels::decode_prefetch() ? "true" : "false");
  return 0;
}
