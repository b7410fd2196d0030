// Kernel tests: every op runs against every table (reference and fast), checked against
// hand-computed values and, over many odd sizes, against a double-precision oracle and
// the reference table. Tolerances are error bounds derived from float32 rounding.
#include "kernels/kernels.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <array>
#include <atomic>
#include <cfloat>
#include <cmath>
#include <cstdlib>
#include <cstring>
#include <limits>
#include <optional>
#include <random>
#include <sstream>
#include <string>
#include <string_view>
#include <thread>
#include <vector>

#include "base/cpu.h"
#include "base/parallel.h"
#include "kernels/amx_gemm.h"
#include "kernels/elementwise.h"
#include "kernels/quant.h"
#include "tensor/dtype.h"

namespace pg::kernels {

// Names the table in gtest's messages about a parameterised test.
void PrintTo(const KernelTable* table, std::ostream* os) { *os << table->name; }

namespace {

constexpr double kEps = FLT_EPSILON;

// Checks |ref[i] - got[i]| <= tol[i] for all i; on failure reports the worst index (by
// error / tolerance), both values, the tolerance and how many values were off.
void expect_close(const std::vector<double>& ref, const std::vector<float>& got,
                  const std::vector<double>& tol, const std::string& what) {
  ASSERT_EQ(ref.size(), got.size()) << what;
  ASSERT_EQ(ref.size(), tol.size()) << what;
  size_t bad = 0, worst = 0;
  double worst_ratio = -1.0;
  for (size_t i = 0; i < ref.size(); ++i) {
    const double err = std::fabs(ref[i] - static_cast<double>(got[i]));
    if (err <= tol[i]) continue;  // false for NaN
    ++bad;
    const double ratio = std::isnan(err) ? INFINITY : tol[i] > 0 ? err / tol[i] : INFINITY;
    if (ratio > worst_ratio) worst_ratio = ratio, worst = i;
  }
  if (bad > 0) {
    ADD_FAILURE() << what << ": " << bad << " of " << ref.size() << " values off; worst index "
                  << worst << ": expected " << ref[worst] << ", got " << got[worst] << ", |diff| "
                  << std::fabs(ref[worst] - got[worst]) << " > tol " << tol[worst];
  }
}

// (Templates, so that a braced list of expected values picks the double version.)
template <typename Float>
void expect_close(const std::vector<Float>& ref, const std::vector<float>& got,
                  const std::vector<double>& tol, const std::string& what) {
  expect_close(std::vector<double>(ref.begin(), ref.end()), got, tol, what);
}

// A few ulps relative, at least a few ulps of 1: for elementwise ops.
std::vector<double> ulps_tol(const std::vector<double>& ref, double ulps = 4) {
  std::vector<double> tol(ref.size());
  for (size_t i = 0; i < ref.size(); ++i) tol[i] = ulps * kEps * std::max(1.0, std::fabs(ref[i]));
  return tol;
}
template <typename Float>
std::vector<double> ulps_tol(const std::vector<Float>& ref, double ulps = 4) {
  return ulps_tol(std::vector<double>(ref.begin(), ref.end()), ulps);
}
std::vector<double> scaled(std::vector<double> v, double s) {
  for (double& x : v) x *= s;
  return v;
}

std::vector<float> uniform(size_t n, float lo, float hi, std::mt19937& rng) {
  std::uniform_real_distribution<float> dist(lo, hi);
  std::vector<float> v(n);
  for (float& x : v) x = dist(rng);
  return v;
}

// A weight matrix [rows, cols] stored in `dtype`, with its exact values as doubles.
struct Weights {
  DType dtype;
  int64_t rows, cols;
  std::vector<float> f32;
  std::vector<uint16_t> u16;
  std::vector<double> exact;
  MatrixView view() const {
    return {dtype, dtype == DType::kF32 ? static_cast<const void*>(f32.data()) : u16.data(), rows,
            cols};
  }
};

Weights make_weights(DType dtype, int64_t rows, int64_t cols, const std::vector<float>& values) {
  Weights w{dtype, rows, cols, {}, {}, {}};
  for (float v : values) {
    if (dtype == DType::kF32) {
      w.f32.push_back(v);
      w.exact.push_back(v);
    } else {
      const uint16_t h = dtype == DType::kBF16 ? f32_to_bf16(v) : f32_to_f16(v);
      w.u16.push_back(h);
      w.exact.push_back(dtype == DType::kBF16 ? bf16_to_f32(h) : f16_to_f32(h));
    }
  }
  return w;
}

std::string dims(std::initializer_list<std::pair<const char*, double>> kv) {
  std::ostringstream s;
  for (const auto& [k, v] : kv) s << k << "=" << v << " ";
  return s.str();
}

// The weight formats of the products: float32; bf16 as stored, or as the low-precision
// modes hold it (low_precision); q8 and q4, quantized from the same values.
enum class Format { kF32, kBf16, kBf16Low, kQ8, kQ4 };

// A [rows, cols] matrix of `values` in format f, with what its view points into.
struct FormatMatrix {
  Weights dense;
  std::optional<QuantizedMatrix> quant;
  MatrixView view() const {
    MatrixView v = quant ? quant->view() : dense.view();
    v.low_precision = f != Format::kF32 && f != Format::kBf16;
    return v;
  }
  Format f;
};
FormatMatrix format_matrix(Format f, int64_t rows, int64_t cols, const std::vector<float>& values) {
  FormatMatrix m{make_weights(f == Format::kF32 ? DType::kF32 : DType::kBF16, rows, cols, values),
                 std::nullopt, f};
  if (f == Format::kQ8 || f == Format::kQ4) {
    const Weights w32 = make_weights(DType::kF32, rows, cols, values);
    m.quant = f == Format::kQ8 ? quantize_q8(w32.view()) : quantize_q4(w32.view());
  }
  return m;
}

// Where got differs from want bit for bit: empty if nowhere, else how many values and the
// first of them (its index and both values).
std::string bit_differences(const std::vector<float>& want, const float* got) {
  int64_t differ = 0, first = -1;
  for (size_t e = 0; e < want.size(); ++e) {
    if (std::memcmp(&want[e], &got[e], sizeof(float)) != 0) {
      if (first < 0) first = static_cast<int64_t>(e);
      ++differ;
    }
  }
  if (differ == 0) return {};
  return std::to_string(differ) + " values differ, the first at index " + std::to_string(first) +
         ": want " + std::to_string(want[static_cast<size_t>(first)]) + ", got " +
         std::to_string(got[first]);
}

class KernelsTest : public ::testing::TestWithParam<const KernelTable*> {
 protected:
  // An odd thread count, so parallel loops split unevenly.
  static void SetUpTestSuite() { set_num_threads(3); }
  static void TearDownTestSuite() { set_num_threads(0); }
  const KernelTable& K() const { return *GetParam(); }
  static const KernelTable& R() { return reference_kernels(); }
};

// ------------------------------------------------------------------------------ matmul

// Double oracle for y = x W^T + b and the bound 2 (k + 2) eps sum_k |x w| (+ |b|).
void matmul_oracle(const std::vector<float>& x, int64_t m, const Weights& w, const float* bias,
                   std::vector<double>& y, std::vector<double>& tol) {
  const int64_t n = w.rows, k = w.cols;
  y.assign(m * n, 0.0);
  tol.assign(m * n, 0.0);
  for (int64_t i = 0; i < m; ++i) {
    for (int64_t j = 0; j < n; ++j) {
      double acc = bias ? bias[j] : 0.0, mag = bias ? std::fabs(bias[j]) : 0.0;
      for (int64_t p = 0; p < k; ++p) {
        acc += x[i * k + p] * w.exact[j * k + p];
        mag += std::fabs(x[i * k + p] * w.exact[j * k + p]);
      }
      y[i * n + j] = acc;
      tol[i * n + j] = 2.0 * static_cast<double>(k + 2) * kEps * mag;
    }
  }
}

void check_matmul(const KernelTable& kt, DType dtype, int64_t m, int64_t k, int64_t n,
                  bool with_bias, std::mt19937& rng) {
  const std::vector<float> x = uniform(m * k, -1, 1, rng);
  const Weights w = make_weights(dtype, n, k, uniform(n * k, -1, 1, rng));
  const std::vector<float> b = uniform(n, -1, 1, rng);
  const float* bias = with_bias ? b.data() : nullptr;
  std::vector<double> exact, tol;
  matmul_oracle(x, m, w, bias, exact, tol);
  std::vector<float> got(m * n, NAN), ref(m * n, NAN);
  kt.matmul(x.data(), m, w.view(), bias, got.data());
  reference_kernels().matmul(x.data(), m, w.view(), bias, ref.data());
  const std::string what = std::string("matmul ") + dtype_name(dtype) + " " +
                           dims({{"m", m}, {"k", k}, {"n", n}, {"bias", with_bias}});
  expect_close(exact, got, tol, what + "vs exact");
  expect_close(ref, got, scaled(tol, 2), what + "vs reference");
}

TEST_P(KernelsTest, Matmul) {
  // Hand-computed: x = [[1, 2], [-1, 0.5]], W = [[1, 0], [0, 1], [1, 1]], b = [0.5, 0, -1].
  const std::vector<float> x = {1, 2, -1, 0.5f}, b = {0.5f, 0, -1};
  for (DType dt : {DType::kF32, DType::kBF16, DType::kF16}) {
    const Weights w = make_weights(dt, 3, 2, {1, 0, 0, 1, 1, 1});
    std::vector<float> y(6, NAN);
    K().matmul(x.data(), 2, w.view(), b.data(), y.data());
    expect_close({1.5, 2, 2, -0.5, 0.5, -1.5}, y, std::vector<double>(6, 0), "matmul hand");
    K().matmul(x.data(), 1, w.view(), nullptr, y.data());
    expect_close({1, 2, 3}, {y.begin(), y.begin() + 3}, std::vector<double>(3, 0), "no bias");
  }
  std::mt19937 rng(1);
  const std::pair<int64_t, int64_t> kn[] = {{1, 1},   {3, 7},    {7, 31},   {31, 3},    {48, 64},
                                            {64, 48}, {100, 97}, {97, 130}, {130, 257}, {257, 100}};
  size_t c = 0;
  // (m = 13: past fast.cc's small-m path, below its oneDNN dispatch, so f32 packs too.)
  for (int64_t m : {1, 2, 3, 5, 13, 17, 64, 259}) {
    for (const auto& [k, n] : kn) {
      for (DType dt : {DType::kF32, DType::kBF16, DType::kF16}) {
        check_matmul(K(), dt, m, k, n, (c++ % 2) == 0, rng);
      }
    }
  }
  for (DType dt : {DType::kF32, DType::kBF16, DType::kF16}) {  // model widths
    check_matmul(K(), dt, 3, 1152, 97, true, rng);
    check_matmul(K(), dt, 1, 2304, 300, false, rng);
    check_matmul(K(), dt, 9, 600, 70, false, rng);
  }
}

// bf16 weights marked low_precision (the bf16 mode's decoder): the fast table may round x
// to bf16 for the products. Each result must match, within float32 summation error, the
// exact product with x as given or with x rounded to bf16 (nearest even) -- whichever the
// kernel computes -- so a lost or repeated element shows even where rounding x moves the
// result more. Weight rows start at every alignment relative to a 64-byte line (the
// kernel's first partial line) and rows are not whole lines for odd k. m from 16 runs
// the prefill product (bf16_gemm.cc: tiles of 16, 32 and 48 rows, 1 to 8 columns; odd k
// goes to oneDNN); of the last shapes, the first two split K into chunks and the columns
// into several panels per thread, and 1100 x 2048 splits the tiles of x into blocks.
TEST_P(KernelsTest, MatmulLowPrecisionBf16) {
  std::mt19937 rng(11);
  std::vector<std::array<int64_t, 3>> shapes;  // m, k, n
  for (int64_t m : {1, 2, 3, 4, 5, 9, 12, 16, 17, 33, 48, 50, 97}) {
    for (int64_t k : {1, 7, 31, 32, 33, 64, 95, 130, 2304}) shapes.push_back({m, k, 0});
  }
  shapes.push_back({50, 8198, 130});
  shapes.push_back({20, 4100, 300});
  shapes.push_back({113, 4097, 67});
  shapes.push_back({1100, 2048, 20});
  for (const auto& [m, k, n_given] : shapes) {
    for (int64_t shift : {0, 1, 13, 31}) {
      const int64_t n = n_given > 0 ? n_given : 7 + (k + m + shift) % 9;
      const std::vector<float> x = uniform(m * k, -1, 1, rng);
      std::vector<float> xr(x.size());
      for (size_t i = 0; i < x.size(); ++i) xr[i] = bf16_to_f32(f32_to_bf16(x[i]));
      const Weights w = make_weights(DType::kBF16, n, k, uniform(n * k, -1, 1, rng));
      std::vector<uint16_t> shifted(static_cast<size_t>(shift + 32), 0);
      // (aligned base: std::vector<uint16_t> from operator new is 16-byte aligned)
      shifted.insert(shifted.begin() + shift, w.u16.begin(), w.u16.end());
      MatrixView v = w.view();
      v.data = shifted.data() + shift;
      v.low_precision = true;
      const std::vector<float> b = uniform(n, -1, 1, rng);
      std::vector<double> exact, exact_rounded, tol, tol_rounded;
      matmul_oracle(x, m, w, b.data(), exact, tol);
      matmul_oracle(xr, m, w, b.data(), exact_rounded, tol_rounded);
      std::vector<float> got(m * n, NAN);
      K().matmul(x.data(), m, v, b.data(), got.data());
      std::vector<double> want(got.size()), tol_want(got.size());
      for (size_t i = 0; i < got.size(); ++i) {  // the nearer of the two
        const bool rounded = std::fabs(got[i] - exact_rounded[i]) < std::fabs(got[i] - exact[i]);
        want[i] = rounded ? exact_rounded[i] : exact[i];
        tol_want[i] = rounded ? tol_rounded[i] : tol[i];
      }
      expect_close(
          want, got, tol_want,
          "low-precision bf16 matmul " + dims({{"m", m}, {"k", k}, {"n", n}, {"shift", shift}}));
    }
  }
}

TEST_P(KernelsTest, MatmulFromManyThreadsAtOnce) {
  // Sessions share one model (and one kernel table) across threads: products run
  // concurrently, each thread on its own x, must give what one thread gets, bit for bit
  // (oneDNN's shared scratchpad once made this fail one time in ten; bf16 marked
  // low_precision runs the bf16 mode's own product, whose packed x is per thread: shared,
  // the threads' x overwrite each other).
  std::mt19937 rng(7);
  constexpr int kThreads = 4;
  for (const auto& [dt, low_precision] :
       {std::pair{DType::kF32, false}, std::pair{DType::kBF16, false},
        std::pair{DType::kBF16, true}}) {
    const int64_t m = 40, k = 200, n = 130;
    const Weights w = make_weights(dt, n, k, uniform(n * k, -1, 1, rng));
    MatrixView view = w.view();
    view.low_precision = low_precision;
    const std::vector<float> b = uniform(n, -1, 1, rng);
    std::vector<std::vector<float>> x(kThreads), want(kThreads);
    for (int t = 0; t < kThreads; ++t) {
      x[t] = uniform(m * k, -1, 1, rng);
      want[t].resize(m * n);
      K().matmul(x[t].data(), m, view, b.data(), want[t].data());
    }
    std::atomic<int> differing{0};
    std::vector<std::thread> threads;
    for (int t = 0; t < kThreads; ++t) {
      threads.emplace_back([&, t] {
        std::vector<float> got(m * n);
        for (int i = 0; i < 25; ++i) {
          K().matmul(x[t].data(), m, view, b.data(), got.data());
          if (std::memcmp(got.data(), want[t].data(), got.size() * sizeof(float)) != 0) ++differing;
        }
      });
    }
    for (auto& t : threads) t.join();
    EXPECT_EQ(differing.load(), 0) << dtype_name(dt) << (low_precision ? " low precision" : "")
                                   << ": concurrent results differ from the single-thread one";
  }
}

TEST_P(KernelsTest, MatmulManyGivesEachProductBitForBit) {
  // matmul_many packs x once for all its matrices (bf16 low precision, q8, q4 at prefill
  // sizes) and splits their columns over the threads together: each output must be what
  // its own matmul gives, bit for bit, whatever the other matrices (column counts that end
  // in partial tiles, K chunks: k = 4200, a last tile of 16 rows: m = 267), and a mix of
  // formats falls back to one product after the other.
  std::mt19937 rng(17);
  for (const Format f : {Format::kF32, Format::kBf16, Format::kBf16Low, Format::kQ8, Format::kQ4}) {
    for (const int64_t m : {1, 9, 16, 33, 50, 267}) {
      for (const int64_t k : {64, 130, 4200}) {
        if ((k == 4200 && m != 50) || (m == 267 && k != 64)) continue;
        const std::vector<int64_t> ns = {37, 8, 300};
        std::vector<FormatMatrix> w;
        std::vector<MatmulOutput> out;
        std::vector<std::vector<float>> got, bias;
        for (const int64_t n : ns) {
          w.push_back(format_matrix(f, n, k, uniform(n * k, -1, 1, rng)));
          bias.push_back(uniform(n, -1, 1, rng));
          got.emplace_back(m * n, NAN);
        }
        for (size_t i = 0; i < ns.size(); ++i)
          out.push_back({w[i].view(), i == 1 ? nullptr : bias[i].data(), got[i].data()});
        const std::vector<float> x = uniform(m * k, -1, 1, rng);
        K().matmul_many(x.data(), m, out.data(), static_cast<int>(out.size()));
        for (size_t i = 0; i < out.size(); ++i) {
          std::vector<float> want(got[i].size());
          K().matmul(x.data(), m, out[i].w, out[i].bias, want.data());
          EXPECT_EQ(bit_differences(want, got[i].data()), "")
              << "format " << static_cast<int>(f) << " output " << i << " "
              << dims({{"m", m}, {"k", k}, {"n", ns[i]}});
        }
      }
    }
  }
  // Mixed formats: each output as its own product.
  const int64_t m = 40, k = 96;
  const Weights a = make_weights(DType::kF32, 20, k, uniform(20 * k, -1, 1, rng));
  const Weights b = make_weights(DType::kBF16, 30, k, uniform(30 * k, -1, 1, rng));
  MatrixView bv = b.view();
  bv.low_precision = true;
  const std::vector<float> x = uniform(m * k, -1, 1, rng);
  std::vector<float> ya(m * 20), yb(m * 30), wa(m * 20), wb(m * 30);
  const MatmulOutput mixed[2] = {{a.view(), nullptr, ya.data()}, {bv, nullptr, yb.data()}};
  K().matmul_many(x.data(), m, mixed, 2);
  K().matmul(x.data(), m, a.view(), nullptr, wa.data());
  K().matmul(x.data(), m, bv, nullptr, wb.data());
  EXPECT_EQ(std::memcmp(ya.data(), wa.data(), ya.size() * sizeof(float)), 0);
  EXPECT_EQ(std::memcmp(yb.data(), wb.data(), yb.size() * sizeof(float)), 0);
}

TEST_P(KernelsTest, MatmulGeluMulIsTheProductsThenTheGating) {
  // matmul_gelu_mul (fused into the quantized product on VNNI: the gating applied to each
  // tile's outputs of both matrices) must give matmul_many over gate and up followed by
  // gelu_tanh_mul, bit for bit: partial tiles of rows (m = 9, 33, 267) and columns (n =
  // 37), several panels walked side by side with the next ones copied in between (k =
  // 2050, n = 300), a partial last block (k = 130, 2050), K in two chunks (bf16: not fused,
  // k = 4200).
  std::mt19937 rng(29);
  for (const Format f : {Format::kF32, Format::kBf16Low, Format::kQ8, Format::kQ4}) {
    for (const int64_t m : {1, 9, 33, 50, 267}) {
      for (const int64_t k : {64, 130, 2050, 4200}) {
        if ((k > 2000 && m != 50) || (m == 267 && k != 64)) continue;
        for (const int64_t n : {37, 300}) {
          // Gate values up to 4 in size: GELU's curved part and both tails.
          const FormatMatrix gate_w = format_matrix(f, n, k, uniform(n * k, -4, 4, rng));
          const FormatMatrix up_w = format_matrix(f, n, k, uniform(n * k, -1, 1, rng));
          const std::vector<float> x = uniform(m * k, -1, 1, rng);
          std::vector<float> got(m * n, NAN);
          K().matmul_gelu_mul(x.data(), m, gate_w.view(), up_w.view(), got.data());
          std::vector<float> gate(m * n), up(m * n);
          const MatmulOutput out[2] = {{gate_w.view(), nullptr, gate.data()},
                                       {up_w.view(), nullptr, up.data()}};
          K().matmul_many(x.data(), m, out, 2);
          K().gelu_tanh_mul(gate.data(), up.data(), gate.data(), m * n);
          EXPECT_EQ(bit_differences(gate, got.data()), "")
              << "format " << static_cast<int>(f) << " " << dims({{"m", m}, {"k", k}, {"n", n}});
        }
      }
    }
  }
}

TEST_P(KernelsTest, MlpIsTheGatingThenTheDownProjection) {
  // mlp (on bf16 low-precision views at prefill sizes: the gating's outputs handed to the
  // down projection already packed) must give matmul_gelu_mul into a buffer followed by
  // matmul with down, bit for bit: partial tiles of rows (m = 17, 33, 50, 267; 1 and 9
  // below the prefill sizes), an odd n (37: not handed on packed), the down projection's
  // K in two chunks (n = 4200), a partial last tile of its columns (h = 20).
  std::mt19937 rng(31);
  for (const Format f : {Format::kF32, Format::kBf16Low, Format::kQ8, Format::kQ4}) {
    for (const int64_t m : {1, 9, 17, 33, 50, 267}) {
      for (const int64_t n : {37, 300, 4200}) {
        if (n == 4200 && m != 50) continue;
        const int64_t k = 130, h = m == 267 ? 20 : 40;
        const FormatMatrix gate_w = format_matrix(f, n, k, uniform(n * k, -4, 4, rng));
        const FormatMatrix up_w = format_matrix(f, n, k, uniform(n * k, -1, 1, rng));
        const FormatMatrix down_w = format_matrix(f, h, n, uniform(h * n, -1, 1, rng));
        const std::vector<float> x = uniform(m * k, -1, 1, rng);
        std::vector<float> hidden(m * n, NAN), got(m * h, NAN);
        K().mlp(x.data(), m, gate_w.view(), up_w.view(), down_w.view(), hidden.data(), got.data());
        std::vector<float> gated(m * n), want(m * h);
        K().matmul_gelu_mul(x.data(), m, gate_w.view(), up_w.view(), gated.data());
        K().matmul(gated.data(), m, down_w.view(), nullptr, want.data());
        EXPECT_EQ(bit_differences(want, got.data()), "")
            << "format " << static_cast<int>(f) << " "
            << dims({{"m", m}, {"k", k}, {"n", n}, {"h", h}});
      }
    }
  }
}

// ------------------------------------------------------------------------------- norms

TEST_P(KernelsTest, RmsNorm) {
  const std::vector<float> w = {0, 1, -0.5f};
  std::vector<float> x = {1, 2, 3}, y(3, NAN);
  const std::vector<double> want = {0.4629100002887783, 1.8516400011551133, 0.6943650004331675};
  K().rms_norm(x.data(), 1, 3, w.data(), 1e-6f, y.data());
  expect_close(want, y, ulps_tol(want, 2 * (3 + 8)), "rms_norm hand");
  K().rms_norm(x.data(), 1, 3, w.data(), 1e-6f, x.data());  // in place
  expect_close(want, x, ulps_tol(want, 2 * (3 + 8)), "rms_norm in place");

  std::mt19937 rng(2);
  for (int64_t rows : {1, 3, 17}) {
    for (int64_t dim : {1, 3, 7, 31, 48, 64, 100, 257, 1152, 2048}) {
      const std::vector<float> xs = uniform(rows * dim, -2, 2, rng), ws = uniform(dim, -1, 1, rng);
      std::vector<double> exact(rows * dim), tol(rows * dim);
      for (int64_t r = 0; r < rows; ++r) {
        double sq = 0;
        for (int64_t i = 0; i < dim; ++i) sq += double(xs[r * dim + i]) * xs[r * dim + i];
        const double inv = 1.0 / std::sqrt(sq / dim + 1e-6);
        for (int64_t i = 0; i < dim; ++i) {
          exact[r * dim + i] = xs[r * dim + i] * inv * (1.0 + ws[i]);
          tol[r * dim + i] = 2.0 * (dim + 8) * kEps * std::fabs(exact[r * dim + i]);
        }
      }
      std::vector<float> got(rows * dim), ref(rows * dim);
      K().rms_norm(xs.data(), rows, dim, ws.data(), 1e-6f, got.data());
      R().rms_norm(xs.data(), rows, dim, ws.data(), 1e-6f, ref.data());
      const std::string what = "rms_norm " + dims({{"rows", rows}, {"dim", dim}});
      expect_close(exact, got, tol, what + "vs exact");
      expect_close(ref, got, scaled(tol, 2), what + "vs reference");
      std::vector<float> inplace = xs;
      K().rms_norm(inplace.data(), rows, dim, ws.data(), 1e-6f, inplace.data());
      expect_close(got, inplace, std::vector<double>(got.size(), 0), what + "in place");
    }
  }
}

TEST_P(KernelsTest, LayerNorm) {
  const std::vector<float> x = {1, 2, 3, 4}, g = {1, 1, 2, 1}, b = {0, 0, 0, 1};
  const std::vector<double> want = {-1.3416354199689269, -0.447211806656309, 0.894423613312618,
                                    2.341635419968927};
  std::vector<float> y(4, NAN);
  K().layer_norm(x.data(), 1, 4, g.data(), b.data(), 1e-5f, y.data());
  expect_close(want, y, ulps_tol(want, 2 * (4 + 13)), "layer_norm hand");

  std::mt19937 rng(3);
  for (int64_t rows : {1, 3, 17}) {
    for (int64_t dim : {1, 3, 7, 31, 48, 64, 100, 257, 1152}) {
      std::vector<float> xs = uniform(rows * dim, -2, 2, rng);
      for (float& v : xs) v += 3.0f;  // a mean far from zero
      const std::vector<float> gs = uniform(dim, -2, 2, rng), bs = uniform(dim, -1, 1, rng);
      std::vector<double> exact(rows * dim), tol(rows * dim);
      for (int64_t r = 0; r < rows; ++r) {
        const float* xr = xs.data() + r * dim;
        double mean = 0, mean_abs = 0, var = 0;
        for (int64_t i = 0; i < dim; ++i)
          mean += xr[i] / double(dim), mean_abs += std::fabs(xr[i]) / dim;
        for (int64_t i = 0; i < dim; ++i) var += (xr[i] - mean) * (xr[i] - mean) / dim;
        const double inv = 1.0 / std::sqrt(var + 1e-5);
        for (int64_t i = 0; i < dim; ++i) {
          const double y_i = (xr[i] - mean) * inv * gs[i] + bs[i];
          exact[r * dim + i] = y_i;
          // Errors of the mean, of (x - mean) and of 1/sqrt(var), then of * gamma + beta.
          tol[r * dim + i] =
              2.0 *
              (std::fabs(gs[i]) * inv *
                   ((dim + 1) * kEps * mean_abs + std::fabs(xr[i] - mean) * (dim + 13) * kEps / 2) +
               2 * kEps * (std::fabs(y_i) + std::fabs(bs[i])));
        }
      }
      std::vector<float> got(rows * dim), ref(rows * dim);
      K().layer_norm(xs.data(), rows, dim, gs.data(), bs.data(), 1e-5f, got.data());
      R().layer_norm(xs.data(), rows, dim, gs.data(), bs.data(), 1e-5f, ref.data());
      const std::string what = "layer_norm " + dims({{"rows", rows}, {"dim", dim}});
      expect_close(exact, got, tol, what + "vs exact");
      expect_close(ref, got, scaled(tol, 2), what + "vs reference");
    }
  }
}

// ------------------------------------------------------------------------- elementwise

const int64_t kLengths[] = {1, 3, 7, 31, 48, 64, 100, 257, 5000, 70001};

TEST_P(KernelsTest, GeluTanh) {
  const std::vector<double> want = {0.8411919906082768, -0.15880800939172324, 2.996362607918227,
                                    0.0, -0.15428599017485606};
  std::vector<float> x = {1, -1, 3, 0, -0.5f}, y(5, NAN);
  K().gelu_tanh(x.data(), y.data(), 5);
  expect_close(want, y, ulps_tol(want), "gelu_tanh hand");
  K().gelu_tanh(x.data(), x.data(), 5);
  expect_close(want, x, ulps_tol(want), "gelu_tanh in place");

  std::mt19937 rng(4);
  for (int64_t n : kLengths) {
    const std::vector<float> xs = uniform(n, -6, 6, rng);
    std::vector<float> got(n), ref(n);
    K().gelu_tanh(xs.data(), got.data(), n);
    R().gelu_tanh(xs.data(), ref.data(), n);
    expect_close(ref, got, ulps_tol(ref), "gelu_tanh " + dims({{"n", n}}));
  }
}

// The bf16 flash attention's e^(x s - m) against exp in double: within the polynomial's
// 3.4e-6, its evaluation's roundings (a few float32 ulps) and the rounding of t = x s log2(e) - m
// log2(e) in float32 (a few half ulps of |x s| + |m| in log2 units, each 2^-24 relative, times ln 2
// in e^t), over n of every remainder of 16, arguments from -110 (below the clamp at -125 ln 2 =
// -86.6) to 5.
TEST(ExpForBf16, WithinItsBoundOfExp) {
  std::mt19937 rng(5);
  for (int64_t n : {1, 15, 16, 17, 100, 1000}) {
    for (auto [s, m] : {std::pair<float, float>{1.0f, 0.0f},
                        {0.125f, 3.5f},
                        {0.1178511f, -2.25f},
                        {1.0f, 30.0f}}) {
      std::uniform_real_distribution<float> arg(-110.0f, 5.0f);
      std::vector<float> x(n), got(n, -1.0f);
      for (auto& v : x) v = (arg(rng) + m) / s;  // x s - m spread over [-110, 5]
      exp_for_bf16_span(x.data(), s, m, got.data(), n);
      std::vector<double> want(n), tol(n);
      for (int64_t i = 0; i < n; ++i) {
        const double t = std::max(double{x[i]} * s - m, -125.0 * std::log(2.0));
        want[i] = std::exp(t);
        const double rounding = 4.0 * (std::fabs(double{x[i]} * s) + std::fabs(m)) *
                                1.4426950408889634 * std::ldexp(1.0, -24) * std::log(2.0);
        tol[i] = want[i] * (3.4e-6 + rounding + std::ldexp(1.0, -21));
      }
      expect_close(want, got, tol, "exp_for_bf16 " + dims({{"n", n}}));
    }
  }
  // A NaN score stays NaN (the attention row it belongs to must come out NaN, not a mean
  // of the values), in any lane.
  std::vector<float> x(17, 1.0f), got(17);
  x[3] = x[16] = NAN;
  exp_for_bf16_span(x.data(), 1.0f, 0.0f, got.data(), 17);
  EXPECT_TRUE(std::isnan(got[3]) && std::isnan(got[16])) << got[3] << " " << got[16];
  EXPECT_NEAR(got[0], std::exp(1.0), 1e-5);
}

// The bf16 flash tiles (D a multiple of 8, low precision; AMX where it runs) keep a NaN
// query's row NaN, as the float32 paths do, and the other rows finite.
TEST(FlashAttention, NanQueryRowStaysNan) {
  const int64_t T = 40, H = 2, D = 72;
  AttentionParams p{.num_queries = T,
                    .num_keys = T,
                    .num_heads = H,
                    .num_kv_heads = H,
                    .head_dim = D,
                    .q_stride = H * D,
                    .kv_stride = H * D,
                    .out_stride = H * D,
                    .scale = 0.125f,
                    .low_precision = true};
  std::mt19937 rng(3);
  std::normal_distribution<float> normal;
  std::vector<float> q(T * H * D), kv(T * H * D), out(T * H * D, 7.0f);
  for (auto& e : q) e = normal(rng);
  for (auto& e : kv) e = normal(rng);
  q[5 * H * D + 3] = NAN;  // row 5, head 0
  fast_kernels().attention(p, q.data(), kv.data(), kv.data(), out.data());
  for (int64_t d = 0; d < D; ++d) {
    EXPECT_TRUE(std::isnan(out[5 * H * D + d])) << "dim " << d << ": " << out[5 * H * D + d];
    EXPECT_TRUE(std::isfinite(out[5 * H * D + D + d])) << "head 1, dim " << d;
    EXPECT_TRUE(std::isfinite(out[6 * H * D + d])) << "row 6, dim " << d;
  }
  // A NaN in a key: every row of that head sees it (no mask), so every row is NaN there;
  // the other head's are finite.
  q[5 * H * D + 3] = 0.5f;
  kv[7 * H * D + D + 10] = NAN;  // key 7, head 1
  std::fill(out.begin(), out.end(), 7.0f);
  fast_kernels().attention(p, q.data(), kv.data(), kv.data(), out.data());
  for (int64_t t = 0; t < T; ++t) {
    EXPECT_TRUE(std::isnan(out[t * H * D + D])) << "row " << t << ", head 1";
    EXPECT_TRUE(std::isfinite(out[t * H * D])) << "row " << t << ", head 0";
  }
}

TEST_P(KernelsTest, GeluTanhMul) {
  const std::vector<float> gate = {1, -1, 3}, up = {2, -3, 0.5f};
  const std::vector<double> want = {2 * 0.8411919906082768, 3 * 0.15880800939172324,
                                    0.5 * 2.996362607918227};
  std::vector<float> y(3, NAN);
  K().gelu_tanh_mul(gate.data(), up.data(), y.data(), 3);
  expect_close(want, y, ulps_tol(want), "gelu_tanh_mul hand");

  std::mt19937 rng(5);
  for (int64_t n : kLengths) {
    const std::vector<float> g = uniform(n, -6, 6, rng), u = uniform(n, -3, 3, rng);
    std::vector<float> got(n), ref(n);
    K().gelu_tanh_mul(g.data(), u.data(), got.data(), n);
    R().gelu_tanh_mul(g.data(), u.data(), ref.data(), n);
    const std::string what = "gelu_tanh_mul " + dims({{"n", n}});
    expect_close(ref, got, ulps_tol(ref), what);
    std::vector<float> g2 = g, u2 = u;  // y aliasing gate, then up
    K().gelu_tanh_mul(g2.data(), u.data(), g2.data(), n);
    K().gelu_tanh_mul(g.data(), u2.data(), u2.data(), n);
    expect_close(got, g2, std::vector<double>(n, 0), what + "y = gate");
    expect_close(got, u2, std::vector<double>(n, 0), what + "y = up");
  }
}

TEST_P(KernelsTest, Rope) {
  // head_dim 4, theta 1e4: inv_freq = [1, 0.01]; pairs (x0, x2) and (x1, x3).
  std::vector<float> x = {1, 2, 3, 4, 1, 2, 3, 4};
  const int64_t pos[] = {1, 2};
  K().rope(x.data(), 2, 4, 1, 4, pos, 10000.0f);
  const std::vector<double> want = {-1.9841106485555495,  1.959900667496664,   2.4623779024123156,
                                    4.019799668334994,    -3.1440391170241875, 1.9196053465598233,
                                    -0.33914308281574557, 4.039197360052977};
  expect_close(want, x, ulps_tol(want), "rope hand");

  std::mt19937 rng(6);
  std::uniform_int_distribution<int64_t> pos_dist(0, 2000);
  for (int64_t rows : {1, 3, 17}) {
    for (int64_t heads : {1, 3}) {
      for (int64_t dim : {2, 16, 24, 72, 256}) {
        const int64_t stride = heads * dim + 5;  // padding must stay untouched
        std::vector<int64_t> positions(rows);
        for (int64_t& p : positions) p = pos_dist(rng);
        std::vector<float> got = uniform(rows * stride, -1, 1, rng), ref = got;
        K().rope(got.data(), rows, stride, heads, dim, positions.data(), 10000.0f);
        R().rope(ref.data(), rows, stride, heads, dim, positions.data(), 10000.0f);
        expect_close(ref, got, ulps_tol(ref),
                     "rope " + dims({{"rows", rows}, {"heads", heads}, {"dim", dim}}));
      }
    }
  }
}

TEST_P(KernelsTest, Softcap) {
  std::vector<float> x = {100, -10, 1};
  K().softcap(x.data(), 3, 50.0f);
  const std::vector<double> want = {48.20137900379085, -9.8687660112452, 0.9998666879965465};
  expect_close(want, x, ulps_tol(want), "softcap hand");

  std::mt19937 rng(7);
  for (int64_t n : kLengths) {
    std::vector<float> got = uniform(n, -100, 100, rng), ref = got;
    K().softcap(got.data(), n, 30.0f);
    R().softcap(ref.data(), n, 30.0f);
    expect_close(ref, got, ulps_tol(ref), "softcap " + dims({{"n", n}}));
  }
}

TEST_P(KernelsTest, Add) {
  std::vector<float> y = {1, 2, 3};
  K().add(y.data(), std::vector<float>{0.5f, -2, 4}.data(), 3);
  expect_close({1.5, 0, 7}, y, std::vector<double>(3, 0), "add hand");

  std::mt19937 rng(8);
  for (int64_t n : kLengths) {
    const std::vector<float> a = uniform(n, -1, 1, rng), b = uniform(n, -1, 1, rng);
    std::vector<float> got = a, ref = a;
    K().add(got.data(), b.data(), n);
    R().add(ref.data(), b.data(), n);
    expect_close(ref, got, ulps_tol(ref), "add " + dims({{"n", n}}));
  }
}

TEST_P(KernelsTest, Scale) {
  std::vector<float> x = {1.5f, 0, 7};
  K().scale(x.data(), 3, -2.0f);
  expect_close({-3, 0, -14}, x, std::vector<double>(3, 0), "scale hand");

  std::mt19937 rng(10);
  for (int64_t n : kLengths) {
    std::vector<float> got = uniform(n, -1, 1, rng), ref = got;
    K().scale(got.data(), n, 0.37f);
    R().scale(ref.data(), n, 0.37f);
    expect_close(ref, got, ulps_tol(ref), "scale " + dims({{"n", n}}));
  }
}

TEST_P(KernelsTest, Argmax) {
  const std::vector<float> hand = {1, 5, -2, 5, 3};
  EXPECT_EQ(K().argmax(hand.data(), 5), 1);  // the first of two equal largest
  EXPECT_EQ(K().argmax(hand.data(), 1), 0);
  const float nan = std::numeric_limits<float>::quiet_NaN();
  const std::vector<float> with_nan = {1, nan, 4, nan};
  EXPECT_EQ(K().argmax(with_nan.data(), 4), 2);  // NaN is never larger
  EXPECT_EQ(K().argmax(std::vector<float>{nan, 9}.data(), 2), 0);

  // Random values, ascending runs (a new largest in every block), ties planted across
  // block boundaries, and NaNs, over odd lengths and offsets: the same index as the
  // reference's scan.
  std::mt19937 rng(11);
  for (int64_t n : kLengths) {
    for (int pattern = 0; pattern < 4; ++pattern) {
      std::vector<float> x = uniform(n + 3, -30, 30, rng);
      if (pattern == 1) std::sort(x.begin(), x.end());
      if (pattern == 2) {
        const float top = 31;
        for (int64_t i = n / 3; i < n + 3; i += std::max<int64_t>(1, n / 4)) x[i] = top;
      }
      if (pattern == 3)
        for (int64_t i = 0; i < n + 3; i += 5) x[i] = nan;
      for (int64_t offset : {0, 1, 3}) {
        const int64_t len = std::min<int64_t>(n, n + 3 - offset);
        EXPECT_EQ(K().argmax(x.data() + offset, len), R().argmax(x.data() + offset, len))
            << dims({{"n", len}, {"pattern", pattern}, {"offset", offset}});
      }
    }
  }
}

// ---------------------------------------------------------------------------- attention

bool visible(const AttentionParams& p, int64_t i, int64_t j) {
  if (p.causal && !(j < p.prefix_len || j <= i)) return false;
  return p.sliding_window <= 0 || i - j < p.sliding_window;
}

// Double oracle over the whole out buffer (entries outside heads keep `out`'s values) and
// the bound 2 sum_j P_j |v_j| (2 Delta + eps (|s_j - s_max| + 2 S + 6)), where Delta
// bounds the float error of every score: (D + 2) eps |scale| sum |q k| + 6 eps |s|.
// With rounding > 0 (bf16 products: q, k, p and v each rounded by at most rounding / 2
// relative), every score may also be off by rounding |scale| sum |q k|, and every product
// p v by rounding p |v|.
void attention_oracle(const AttentionParams& p, const std::vector<float>& q,
                      const std::vector<float>& k, const std::vector<float>& v,
                      std::vector<double>& out, std::vector<double>& tol, double rounding = 0) {
  const int64_t D = p.head_dim, S = p.num_keys, group = p.num_heads / p.num_kv_heads;
  tol.assign(out.size(), 0.0);
  std::vector<double> s(S), prob(S);
  for (int64_t t = 0; t < p.num_queries; ++t) {
    for (int64_t h = 0; h < p.num_heads; ++h) {
      const int64_t i = p.query_offset + t, kvh = h / group;
      double s_max = -INFINITY, delta = 0, z = 0;
      for (int64_t j = 0; j < S; ++j) {
        double dot = 0, mag = 0;
        for (int64_t d = 0; d < D; ++d) {
          const double a = q[t * p.q_stride + h * D + d], b = k[j * p.kv_stride + kvh * D + d];
          dot += a * b, mag += std::fabs(a * b);
        }
        s[j] = dot * p.scale;
        if (p.softcap > 0) s[j] = p.softcap * std::tanh(s[j] / p.softcap);
        if (!visible(p, i, j)) continue;
        s_max = std::max(s_max, s[j]);
        delta = std::max(delta, ((D + 2) * kEps + rounding) * std::fabs(p.scale) * mag +
                                    6 * kEps * std::fabs(s[j]));
      }
      for (int64_t j = 0; j < S; ++j) z += prob[j] = visible(p, i, j) ? std::exp(s[j] - s_max) : 0;
      for (int64_t d = 0; d < D; ++d) {
        double acc = 0, bound = 0;
        for (int64_t j = 0; j < S; ++j) {
          if (prob[j] == 0) continue;
          const double vj = v[j * p.kv_stride + kvh * D + d], pj = prob[j] / z;
          acc += pj * vj;
          bound += pj * std::fabs(vj) *
                   (2 * delta + rounding + kEps * (std::fabs(s[j] - s_max) + 2 * S + 6));
        }
        out[t * p.out_stride + h * D + d] = z > 0 ? acc : 0.0;
        tol[t * p.out_stride + h * D + d] = 2 * bound;
      }
    }
  }
}

TEST_P(KernelsTest, Attention) {
  {  // One head, D = 2, keys [1, 0] and [0, 1], values [1, 2] and [3, 4].
    const std::vector<float> q = {1, 0, 1, 0}, k = {1, 0, 0, 1}, v = {1, 2, 3, 4};
    AttentionParams p{.num_queries = 2,
                      .num_keys = 2,
                      .num_heads = 1,
                      .num_kv_heads = 1,
                      .head_dim = 2,
                      .q_stride = 2,
                      .kv_stride = 2,
                      .out_stride = 2};
    auto run = [&](AttentionParams pp) {
      std::vector<float> out(4, NAN);
      K().attention(pp, q.data(), k.data(), v.data(), out.data());
      return out;
    };
    const std::vector<double> both = {1.5378828427399902, 2.5378828427399904};
    const std::vector<double> capped = {1.763553421857599, 2.763553421857599};
    expect_close({both[0], both[1], both[0], both[1]}, run(p), ulps_tol({3, 3, 3, 3}), "plain");
    p.causal = true;  // query 0 sees key 0 only
    expect_close({1, 2, both[0], both[1]}, run(p), ulps_tol({3, 3, 3, 3}), "causal");
    p.prefix_len = 2;  // bidirectional prefix: both see both
    expect_close({both[0], both[1], both[0], both[1]}, run(p), ulps_tol({3, 3, 3, 3}), "prefix");
    p.prefix_len = 0, p.sliding_window = 1;  // each query sees only itself
    expect_close({1, 2, 3, 4}, run(p), ulps_tol({3, 3, 3, 3}), "sliding window");
    p.causal = false, p.sliding_window = 0, p.softcap = 0.5f;  // scores [0.5 tanh 2, 0]
    expect_close({capped[0], capped[1], capped[0], capped[1]}, run(p), ulps_tol({3, 3, 3, 3}),
                 "softcap");
    p.softcap = 0, p.query_offset = 5, p.sliding_window = 2;  // sees no key: zeros
    expect_close({0, 0, 0, 0}, run(p), std::vector<double>(4, 0), "no visible key");
    // A NaN query makes its row NaN (every score NaN), not zeros; the other row is exact.
    p.query_offset = 0, p.sliding_window = 0;
    const std::vector<float> nan_q = {NAN, 0, 1, 0};
    std::vector<float> out(4, 7.0f);
    K().attention(p, nan_q.data(), k.data(), v.data(), out.data());
    EXPECT_TRUE(std::isnan(out[0]) && std::isnan(out[1])) << out[0] << " " << out[1];
    expect_close({both[0], both[1]}, {out[2], out[3]}, ulps_tol({3, 3}), "beside a NaN row");
  }

  struct Case {
    int64_t T, S, offset, prefix;
    bool causal;
    int64_t window;
  };
  const Case cases[] = {{1, 1, 0, 0, false, 0},
                        {5, 5, 0, 0, true, 0},
                        {5, 5, 0, 0, false, 0},
                        {3, 20, 17, 0, true, 0},
                        {21, 21, 0, 16, true, 0},
                        {37, 37, 0, 0, true, 20},
                        {4, 37, 33, 0, true, 20},
                        {2, 10, 20, 0, false, 3},
                        // Several key chunks (of 256 keys in the flash tiles): the online
                        // softmax rescales its running sums; a partial last chunk.
                        {9, 150, 0, 0, false, 0},
                        {70, 150, 80, 100, true, 0},
                        {33, 130, 97, 0, true, 50},
                        {5, 530, 0, 0, false, 0},
                        {9, 600, 591, 300, true, 0},
                        {17, 520, 503, 0, true, 300},
                        // Decode at a long cache: the keys split into chunks over the
                        // threads, merged after; with a window, leading chunks see nothing.
                        {1, 300, 299, 0, true, 0},
                        {3, 301, 298, 0, true, 0},
                        {1, 300, 299, 0, true, 40},
                        {2, 300, 0, 300, true, 0}};
  std::mt19937 rng(9);
  for (const Case& c : cases) {
    for (auto [hq, hkv] : {std::pair<int64_t, int64_t>{4, 1}, {4, 2}, {4, 4}}) {
      for (int64_t D : {16, 20, 24, 32, 64, 72, 80, 128, 256}) {
        for (float cap : {0.0f, 5.0f}) {
          AttentionParams p{.num_queries = c.T,
                            .num_keys = c.S,
                            .num_heads = hq,
                            .num_kv_heads = hkv,
                            .head_dim = D,
                            .q_stride = hq * D + 3,
                            .kv_stride = hkv * D + 5,
                            .out_stride = hq * D + 2,
                            .query_offset = c.offset,
                            .prefix_len = c.prefix,
                            .causal = c.causal,
                            .sliding_window = c.window,
                            .scale = 1.0f / std::sqrt(float(D)),
                            .softcap = cap};
          const std::vector<float> q = uniform(c.T * p.q_stride, -2, 2, rng),
                                   k = uniform(c.S * p.kv_stride, -2, 2, rng),
                                   v = uniform(c.S * p.kv_stride, -1, 1, rng);
          std::vector<float> got(c.T * p.out_stride, 7.0f), ref = got;  // 7: untouched pad
          std::vector<double> exact(got.begin(), got.end()), tol;
          attention_oracle(p, q, k, v, exact, tol);
          K().attention(p, q.data(), k.data(), v.data(), got.data());
          R().attention(p, q.data(), k.data(), v.data(), ref.data());
          const std::string what = "attention " + dims({{"T", c.T},
                                                        {"S", c.S},
                                                        {"offset", c.offset},
                                                        {"prefix", c.prefix},
                                                        {"causal", c.causal},
                                                        {"window", c.window},
                                                        {"Hq", hq},
                                                        {"Hkv", hkv},
                                                        {"D", D},
                                                        {"softcap", cap}});
          expect_close(exact, got, tol, what + "vs exact");
          expect_close(ref, got, scaled(tol, 2), what + "vs reference");

          // Low precision: bf16 products where the table has them (head dims of 8k),
          // within the bound widened by bf16 rounding (2^-8 per product of two roundings).
          p.low_precision = true;
          std::vector<float> low(c.T * p.out_stride, 7.0f);
          std::vector<double> exact_low(low.begin(), low.end()), tol_low;
          attention_oracle(p, q, k, v, exact_low, tol_low, std::ldexp(1.0, -8));
          K().attention(p, q.data(), k.data(), v.data(), low.data());
          expect_close(exact_low, low, tol_low, what + "low precision vs exact");

          // A bf16 KV cache (kv_bf16): keys and values given as bf16, against the oracle
          // on the float32 values they represent, at full and low precision (a few head
          // dims: the generic loops, SigLIP's 72 and Gemma's 256).
          if (D != 20 && D != 72 && D != 256) continue;
          std::vector<uint16_t> k16(k.size()), v16(v.size());
          std::vector<float> kr(k.size()), vr(v.size());
          for (size_t i = 0; i < k.size(); ++i) {
            k16[i] = f32_to_bf16(k[i]), v16[i] = f32_to_bf16(v[i]);
            kr[i] = bf16_to_f32(k16[i]), vr[i] = bf16_to_f32(v16[i]);
          }
          for (bool lowp : {false, true}) {
            p.low_precision = lowp;
            p.kv_bf16 = true;
            std::vector<float> got16(c.T * p.out_stride, 7.0f);
            std::vector<double> exact16(got16.begin(), got16.end()), tol16;
            attention_oracle(p, q, kr, vr, exact16, tol16, lowp ? std::ldexp(1.0, -8) : 0.0);
            K().attention(p, q.data(), k16.data(), v16.data(), got16.data());
            expect_close(exact16, got16, tol16,
                         what + (lowp ? "bf16 cache, low precision" : "bf16 cache") + " vs exact");
          }
          p.kv_bf16 = false;
        }
      }
    }
  }
}

INSTANTIATE_TEST_SUITE_P(Tables, KernelsTest,
                         ::testing::Values(&reference_kernels(), &fast_kernels()),
                         [](const auto& info) { return std::string(info.param->name); });

// The probes' tile values (amx_gemm.h): not zeros, every one finite with a magnitude from
// 2^-4 to below 1, both signs; and the products' loop alone (bench/tile_loop_probe) runs
// four products per step of each pair of x's blocks, and none where AMX cannot run.
TEST(AmxGemm, ProbeValuesAndTheLoopAlone) {
  std::vector<uint16_t> v(4096);
  fill_probe_values(v.data(), static_cast<int64_t>(v.size()));
  int negative = 0;
  for (const uint16_t e : v) {
    const float f = bf16_to_f32(e);
    ASSERT_TRUE(std::abs(f) >= 0x1p-4f && std::abs(f) < 1.0f) << f;
    negative += f < 0;
  }
  EXPECT_GT(negative, 1500);
  EXPECT_LT(negative, 2600);
  std::vector<uint16_t> w(2 * 3 * 512), x(4 * 3 * 512);
  fill_probe_values(w.data(), static_cast<int64_t>(w.size()));
  fill_probe_values(x.data(), static_cast<int64_t>(x.size()));
  const int64_t products = amx_bf16_loop_loaded(w.data(), x.data(), 3, 4, 5);
  EXPECT_EQ(products, amx_products_run() ? 5 * 2 * 4 * 3 : 0);
}

// The AMX tiles' product itself (amx_gemm.h), where it runs: each output within float32
// summation error of the exact product of x rounded to bf16, over shapes that end in
// partial tiles of x's rows (m = 1, 17, 50), of weight rows (n = 5, 37) and of K's steps
// of 32 (k = 1, 31, 33, 130), weight rows at odd addresses (shift 1), several outputs at
// once, K in three chunks, each resuming from the sums the one before left (k = 4200), x's
// rows in two passes (m = 400, k = 2048) and both (m = 800, k = 4200), every matrix in whole
// tiles (their tiles loaded from the weight rows); and it declines f32 matrices and K that
// differs from x's.
TEST(AmxGemm, MatchesTheExactProductOfRoundedX) {
  if (!amx_products_run()) GTEST_SKIP() << "no AMX tiles in this build or process";
  EXPECT_TRUE(amx_enabled());
  std::mt19937 rng(43);
  std::vector<std::pair<int64_t, int64_t>> shapes;  // m, k
  for (const int64_t m : {1, 17, 50}) {
    for (const int64_t k : {1, 31, 32, 33, 130, 2048}) shapes.push_back({m, k});
  }
  shapes.push_back({17, 4200});
  shapes.push_back({400, 2048});
  shapes.push_back({800, 4200});
  // Many jobs per thread (41 jobs of two blocks here, against 8 per thread claimed at
  // once): each job's rows packed between the products of the one before it, and those
  // of the job after that prefetched; an odd number of blocks leaves a job of one. Also at
  // one thread, whose single claim holds them all.
  const size_t many_from = shapes.size();
  shapes.push_back({50, 130});
  shapes.push_back({17, 4200});
  shapes.push_back({50, 130});
  const size_t one_thread = shapes.size() - 1;
  // Every matrix in whole tiles (rows a multiple of 16, K of 32): each job's first pair of
  // x's blocks loads its tiles from the weight rows and stores them packed for the pairs
  // after it (m = 50: two pairs; m = 400: 13 pairs in two passes, K in three chunks).
  const size_t whole_from = shapes.size();
  shapes.push_back({17, 64});
  shapes.push_back({50, 2048});
  shapes.push_back({400, 4224});
  const int threads = num_threads();
  for (size_t si = 0; si < shapes.size(); ++si) {
    const auto& [m, k] = shapes[si];
    const std::vector<int64_t> ns =
        si >= whole_from
            ? (m == 400 ? std::vector<int64_t>{64, 32, 48} : std::vector<int64_t>{1008, 256, 48})
        : si >= many_from ? std::vector<int64_t>{1000, 250, 37}
                          : std::vector<int64_t>{5, 37, 64};
    set_num_threads(si == one_thread ? 1 : threads);
    const std::vector<float> x = uniform(m * k, -1, 1, rng);
    std::vector<float> xr(x.size());
    for (size_t i = 0; i < x.size(); ++i) xr[i] = bf16_to_f32(f32_to_bf16(x[i]));
    std::vector<Weights> w;
    std::vector<std::vector<uint16_t>> shifted;
    std::vector<std::vector<float>> bias, got;
    std::vector<MatmulOutput> out;
    for (const int64_t n : ns) {
      w.push_back(make_weights(DType::kBF16, n, k, uniform(n * k, -1, 1, rng)));
      shifted.emplace_back(1, 0);
      shifted.back().insert(shifted.back().end(), w.back().u16.begin(), w.back().u16.end());
      bias.push_back(uniform(n, -1, 1, rng));
      got.emplace_back(m * n, NAN);
    }
    for (size_t i = 0; i < ns.size(); ++i) {
      MatrixView v = w[i].view();
      v.data = shifted[i].data() + 1;
      out.push_back({v, i == 1 ? nullptr : bias[i].data(), got[i].data()});
    }
    ASSERT_TRUE(gemm_bf16_amx(x.data(), m, k, out.data(), static_cast<int>(out.size())));
    for (size_t i = 0; i < ns.size(); ++i) {
      std::vector<double> exact, tol;
      matmul_oracle(xr, m, w[i], out[i].bias, exact, tol);
      expect_close(exact, got[i], tol,
                   "AMX bf16 product " + dims({{"m", m}, {"k", k}, {"n", ns[i]}}) +
                       (si == one_thread ? " (one thread)" : ""));
    }
  }
  set_num_threads(threads);
  const Weights f32 = make_weights(DType::kF32, 4, 8, std::vector<float>(32, 1.0f));
  const Weights b16 = make_weights(DType::kBF16, 4, 8, std::vector<float>(32, 1.0f));
  const std::vector<float> x(16 * 8, 1.0f);
  std::vector<float> y(16 * 4, NAN);
  const MatmulOutput not_bf16{f32.view(), nullptr, y.data()};
  const MatmulOutput other_k{b16.view(), nullptr, y.data()};
  EXPECT_FALSE(gemm_bf16_amx(x.data(), 16, 8, &not_bf16, 1));
  EXPECT_FALSE(gemm_bf16_amx(x.data(), 16, 7, &other_k, 1));
  EXPECT_TRUE(std::all_of(y.begin(), y.end(), [](float v) { return std::isnan(v); }));
}

TEST(KernelSelection, DefaultAndOverride) {
  const char* env = std::getenv("PG_KERNELS");
  const bool want_ref = env != nullptr && std::string_view(env) == "reference";
  EXPECT_EQ(&kernels(), want_ref ? &reference_kernels() : &fast_kernels());
  set_active_kernels(&reference_kernels());
  EXPECT_EQ(&kernels(), &reference_kernels());
  set_active_kernels(&fast_kernels());
  EXPECT_EQ(&kernels(), &fast_kernels());
  set_active_kernels(nullptr);
  EXPECT_EQ(&kernels(), want_ref ? &reference_kernels() : &fast_kernels());
}

}  // namespace
}  // namespace pg::kernels
