// The w8a8 mode's kernels: per-row q8 quantization (quantize_q8_rows) matches its scalar
// twin and round-trips within half a step of the row's scale; each library's product (AMX
// int8 tiles, gemm_w8a8_amx; AVX512-VNNI, gemm_w8a8_vnni: one test body run on both)
// matches the scalar twin bit for bit over odd shapes, chunks of K and passes over x; and
// that twin is within the derived quantization bound of the float product, so it defines
// what it says.
#include <gtest/gtest.h>

#include <bit>
#include <cfloat>
#include <cmath>
#include <cstring>
#include <ostream>
#include <random>
#include <string>
#include <vector>

#include "kernels/amx_gemm.h"
#include "kernels/amx_w8a8.h"
#include "kernels/elementwise.h"
#include "kernels/kernels.h"
#include "kernels/quant.h"
#include "kernels/quant_gemm.h"
#include "test_util.h"

namespace {

using pg::testing::random_matrix;

// Whether two floats are the same bit pattern.
bool same_bits(float a, float b) {
  return std::bit_cast<uint32_t>(a) == std::bit_cast<uint32_t>(b);
}

pg::kernels::QuantizedMatrix row_scaled(const std::vector<float>& w, int64_t n, int64_t k) {
  return pg::kernels::quantize_q8_rows({pg::DType::kF32, w.data(), n, k, nullptr});
}

TEST(W8a8Quantize, RowsMatchTheScalarTwinAndRoundTripWithinHalfAStep) {
  for (const int64_t k : {5, 32, 100, 2112}) {
    const int64_t n = 7, nb = pg::quant_blocks(k);
    auto w = random_matrix(n, k, 3);
    w[static_cast<size_t>(k / 2)] = 40.0f;  // an outlier sets row 0's scale
    const pg::MatrixView src{pg::DType::kF32, w.data(), n, k, nullptr};
    const auto q = pg::kernels::quantize_q8_rows(src);
    const auto twin = pg::kernels::quantize_reference(src, pg::DType::kI8, /*row_scales=*/true);
    ASSERT_TRUE(q.row_scales && q.view().row_scales);
    ASSERT_EQ(q.data.size(), twin.data.size());
    EXPECT_EQ(std::memcmp(q.data.data(), twin.data.data(), q.data.size()), 0) << "k " << k;
    EXPECT_EQ(std::memcmp(q.scales.data(), twin.scales.data(), q.scales.size() * 4), 0);
    EXPECT_TRUE(pg::kernels::has_row_scales(q.view()));
    // (A row of one block has one scale either way.)
    EXPECT_EQ(pg::kernels::has_row_scales(pg::kernels::quantize_q8(src).view()), nb == 1);
    std::vector<float> back(static_cast<size_t>(nb * 32));
    for (int64_t r = 0; r < n; ++r) {
      float amax = 0;
      for (int64_t c = 0; c < k; ++c) amax = std::max(amax, std::fabs(w[r * k + c]));
      for (int64_t b = 0; b < nb; ++b) EXPECT_EQ(q.scales[r * nb + b], amax / 127.0f);
      pg::dequantize_row(q.view(), r, back.data());
      for (int64_t c = 0; c < k; ++c) {
        const float step = amax / 127.0f;
        ASSERT_LE(std::fabs(back[c] - w[r * k + c]), 0.5f * step * (1 + 4 * FLT_EPSILON))
            << "k " << k << " row " << r << " col " << c;
      }
    }
  }
}

// quantize_rows_int8 on rows with exact codes, a row of zeros, a row too small to scale, and
// rows holding a NaN or an infinity (scale NaN, codes 0: the row's outputs become NaN).
TEST(W8a8Quantize, ActivationRowsIncludingZerosTinyAndNonFinite) {
  const int64_t k = 37, ldq = 64;
  std::vector<float> x(static_cast<size_t>(5 * k), 0.0f);
  for (int64_t c = 0; c < k; ++c) x[static_cast<size_t>(c)] = static_cast<float>(c % 2 ? -c : c);
  x[3] = 254.0f;  // row 0: scale 2, codes c / 2 rounded to even, 127 at column 3
  for (int64_t c = 0; c < k; ++c) x[static_cast<size_t>(2 * k + c)] = 1e-37f;  // row 2: tiny
  x[static_cast<size_t>(3 * k + 20)] = NAN;
  x[static_cast<size_t>(4 * k + 36)] = -INFINITY;  // (the last, masked, column)
  std::vector<int8_t> q(static_cast<size_t>(5 * ldq), 99);
  std::vector<float> scale(5, -1.0f);
  pg::kernels::quantize_rows_int8(x.data(), 5, k, q.data(), ldq, scale.data());
  EXPECT_EQ(scale[0], 2.0f);
  for (int64_t c = 0; c < k; ++c) {
    const float want = c == 3 ? 127.0f : std::nearbyint(x[static_cast<size_t>(c)] / 2.0f);
    EXPECT_EQ(q[static_cast<size_t>(c)], static_cast<int8_t>(want)) << "column " << c;
  }
  EXPECT_EQ(scale[1], 0.0f);
  EXPECT_EQ(scale[2], 0.0f);
  EXPECT_TRUE(std::isnan(scale[3]));
  EXPECT_TRUE(std::isnan(scale[4]));
  for (int64_t r = 0; r < 5; ++r) {
    for (int64_t c = r == 0 ? k : 0; c < ldq; ++c)
      EXPECT_EQ(q[static_cast<size_t>(r * ldq + c)], 0) << "row " << r << " column " << c;
  }
}

TEST(W8a8Product, FormatsAreCheckedBeforeAnythingRuns) {
  const auto w = random_matrix(32, 64, 1);
  const auto rows = row_scaled(w, 32, 64);
  const pg::MatrixView src{pg::DType::kF32, w.data(), 32, 64, nullptr};
  const auto blocks = pg::kernels::quantize_q8(src);
  std::vector<float> y(32 * 32);
  const pg::kernels::MatmulOutput good{rows.view(), nullptr, y.data()};
  const pg::kernels::MatmulOutput block_scaled{blocks.view(), nullptr, y.data()};
  EXPECT_TRUE(pg::kernels::w8a8_formats(&good, 1, 64));
  EXPECT_FALSE(pg::kernels::w8a8_formats(&good, 1, 65));          // k differs
  EXPECT_FALSE(pg::kernels::w8a8_formats(&block_scaled, 1, 64));  // scales per block
  const auto odd = row_scaled(w, 32, 32);  // one block: half a tile row, taken
  const pg::kernels::MatmulOutput half{odd.view(), nullptr, y.data()};
  EXPECT_TRUE(pg::kernels::w8a8_formats(&half, 1, 32));
  EXPECT_FALSE(pg::kernels::w8a8_formats(&good, 1, 1 << 17));  // int32 sums could overflow
  const auto few = row_scaled(w, 24, 64);                      // 24 rows: not whole tiles
  const pg::kernels::MatmulOutput partial{few.view(), nullptr, y.data()};
  EXPECT_FALSE(pg::kernels::w8a8_formats(&partial, 1, 64));
  EXPECT_FALSE(pg::kernels::gemm_w8a8_amx(w.data(), 16, 64, &partial, 1));
}

// The scalar twin against the product of x and the dequantized weights in double, for x
// of whole numbers with 127 in each row (so the row's scale is 1 and its codes are x):
// each output within float32 rounding (the weights' dequantization, the sum's conversion,
// the scale and the fma). Sharp enough for a code of x paired with another column's weight.
TEST(W8a8Product, TwinIsTheProductOfTheCodes) {
  const int64_t m = 5, n = 16, k = 2112, nb = pg::quant_blocks(k);
  const auto w = random_matrix(n, k, 11);
  std::mt19937_64 rng(12);
  std::uniform_int_distribution<int> code(-127, 127);
  std::vector<float> x(static_cast<size_t>(m * k));
  for (float& v : x) v = static_cast<float>(code(rng));
  for (int64_t i = 0; i < m; ++i) x[static_cast<size_t>(i * k + 7 * i)] = i % 2 ? 127 : -127;
  const auto q = row_scaled(w, n, k);
  std::vector<float> y(static_cast<size_t>(m * n));
  const pg::kernels::MatmulOutput out{q.view(), nullptr, y.data()};
  pg::kernels::gemm_w8a8_reference(x.data(), m, k, &out, 1);
  std::vector<float> wrow(static_cast<size_t>(nb * 32));
  for (int64_t j = 0; j < n; ++j) {
    pg::dequantize_row(q.view(), j, wrow.data());
    for (int64_t i = 0; i < m; ++i) {
      double want = 0, mag = 0;
      for (int64_t c = 0; c < k; ++c) {
        want += double{x[i * k + c]} * wrow[c];
        mag += std::fabs(double{x[i * k + c]} * wrow[c]);
      }
      const double bound = mag * FLT_EPSILON + std::fabs(want) * 4 * FLT_EPSILON;
      EXPECT_LE(std::fabs(y[i * n + j] - want), bound) << "row " << i << " output " << j;
    }
  }
}

// The decode products (m <= 8) read a row-scaled matrix's first scale per row instead of
// every block's: the same values, bit for bit, as the q8 product of the same matrix read
// without the flag. Odd rows (pairs and a single), a partial last group (2112) and a short
// last block (100).
TEST(W8a8Decode, RowScalesGiveTheBlockProductsValues) {
  for (const int64_t k : {100, 2112}) {
    const int64_t n = 37;
    const auto w = random_matrix(n, k, 51), bias = random_matrix(1, n, 52);
    const auto q = row_scaled(w, n, k);
    pg::MatrixView as_blocks = q.view();
    as_blocks.row_scales = false;
    // The flagged view reads each row's first scale alone: the other blocks' may hold
    // anything.
    std::vector<float> first_only(q.scales.begin(), q.scales.end());
    const int64_t nb = pg::quant_blocks(k);
    for (int64_t r = 0; r < n; ++r)
      for (int64_t b = 1; b < nb; ++b) first_only[static_cast<size_t>(r * nb + b)] = -1e30f;
    pg::MatrixView flagged = q.view();
    flagged.scales = first_only.data();
    for (const int64_t m : {1, 3, 8}) {
      const auto x = random_matrix(m, k, 53);
      std::vector<float> got(static_cast<size_t>(m * n), NAN), want(got.size(), NAN);
      pg::kernels::fast_kernels().matmul(x.data(), m, flagged, bias.data(), got.data());
      pg::kernels::fast_kernels().matmul(x.data(), m, as_blocks, bias.data(), want.data());
      for (size_t e = 0; e < got.size(); ++e) {
        ASSERT_TRUE(same_bits(got[e], want[e]))
            << "k " << k << " m " << m << " row " << e / n << " output " << e % n << ": got "
            << got[e] << ", want " << want[e];
      }
    }
  }
  // What a decode pass reads: the codes and one scale per row.
  const auto q = row_scaled(random_matrix(16, 2112, 54), 16, 2112);
  EXPECT_EQ(q.view().stream_bytes(), 16 * (2112 + 4));
  EXPECT_EQ(q.view().total_bytes(), 16 * (2112 + 66 * 4));
}

// gemm_w8a8_amx against its twin, bit for bit: m from 1 to 400 (partial blocks of x, an odd
// last block, two passes at 400), k from 32 to 8256 (a partial last block at 100 and 2090,
// partial last groups, an odd number of blocks at 32, 96 and 4304, SigLIP's MLP width, whose
// last step is half a tile row; chunks of K at 4304 and 8256), n of 16 (one block: a job
// alone) to 640 (many jobs in turn), one output or three with biases (jobs across outputs).
// The libraries that run the w8a8 products: each test body below runs on every one.
struct Library {
  const char* name;
  bool (*runs)();
  bool (*product)(const float*, int64_t, int64_t, const pg::kernels::MatmulOutput*, int);
  bool (*gated)(const float*, int64_t, const pg::MatrixView&, const pg::MatrixView&, float*);
};
class W8a8Products : public ::testing::TestWithParam<Library> {};
void PrintTo(const Library& lib, std::ostream* os) { *os << lib.name; }

TEST_P(W8a8Products, MatchTheTwinBitForBit) {
  const Library& lib = GetParam();
  if (!lib.runs()) GTEST_SKIP() << "no " << lib.name << " in this build or process";
  struct Case {
    int64_t m, k;
    std::vector<int64_t> ns;
  };
  const Case cases[] = {
      {1, 64, {16}},        {16, 100, {48}},   {17, 2090, {16, 32, 48}},  {50, 2112, {640}},
      {33, 8256, {32, 16}}, {400, 4096, {48}}, {267, 2048, {64, 16, 16}}, {20, 32, {16}},
      {17, 96, {32}},       {256, 4304, {48}}};
  for (const Case& c : cases) {
    auto x = random_matrix(c.m, c.k, 21);
    if (c.m > 2) x[static_cast<size_t>(c.k + 5)] = NAN;  // row 1's outputs: NaN
    std::vector<pg::kernels::QuantizedMatrix> qs;
    std::vector<std::vector<float>> biases, got, want;
    std::vector<pg::kernels::MatmulOutput> out_got, out_want;
    for (size_t i = 0; i < c.ns.size(); ++i) {
      const int64_t n = c.ns[i];
      qs.push_back(row_scaled(random_matrix(n, c.k, 30 + i), n, c.k));
      biases.push_back(i == 1 ? std::vector<float>() : random_matrix(1, n, 40 + i));
      got.emplace_back(static_cast<size_t>(c.m * n), NAN);
      want.emplace_back(static_cast<size_t>(c.m * n), NAN);
    }
    for (size_t i = 0; i < c.ns.size(); ++i) {
      const float* bias = biases[i].empty() ? nullptr : biases[i].data();
      out_got.push_back({qs[i].view(), bias, got[i].data()});
      out_want.push_back({qs[i].view(), bias, want[i].data()});
    }
    const int count = static_cast<int>(c.ns.size());
    ASSERT_TRUE(lib.product(x.data(), c.m, c.k, out_got.data(), count));
    pg::kernels::gemm_w8a8_reference(x.data(), c.m, c.k, out_want.data(), count);
    for (size_t i = 0; i < c.ns.size(); ++i) {
      int64_t bad = 0, first = -1;
      for (size_t e = 0; e < got[i].size(); ++e) {
        const bool nan_row = c.m > 2 && static_cast<int64_t>(e) / c.ns[i] == 1;
        const bool same = nan_row ? std::isnan(got[i][e]) && std::isnan(want[i][e])
                                  : same_bits(got[i][e], want[i][e]);
        if (!same && bad++ == 0) first = static_cast<int64_t>(e);
      }
      EXPECT_EQ(bad, 0) << "m " << c.m << " k " << c.k << " output " << i << ": first at row "
                        << first / c.ns[i] << " column " << first % c.ns[i] << ", got "
                        << got[i][static_cast<size_t>(std::max<int64_t>(first, 0))] << " want "
                        << want[i][static_cast<size_t>(std::max<int64_t>(first, 0))];
    }
  }
}

// Each library refuses what w8a8_formats refuses (block scales, rows not whole tiles, k
// past 2^17) and a gated pair whose up differs from gate, returning false and writing
// nothing.
TEST_P(W8a8Products, RefuseOtherFormatsWritingNothing) {
  const Library& lib = GetParam();
  if (!lib.runs()) GTEST_SKIP() << "no " << lib.name << " in this build or process";
  const int64_t m = 20, k = 64;
  const auto x = random_matrix(m, k, 71);
  const auto w = random_matrix(48, k, 72);
  const pg::MatrixView src{pg::DType::kF32, w.data(), 48, k, nullptr};
  const auto blocks = pg::kernels::quantize_q8(src);
  const auto few = row_scaled(w, 24, k);
  const auto gate = row_scaled(w, 48, k), up = row_scaled(w, 32, k);
  std::vector<float> y(static_cast<size_t>(m * 48), 7.0f);
  const pg::kernels::MatmulOutput block_scaled{blocks.view(), nullptr, y.data()};
  const pg::kernels::MatmulOutput partial{few.view(), nullptr, y.data()};
  const pg::kernels::MatmulOutput good{gate.view(), nullptr, y.data()};
  EXPECT_FALSE(lib.product(x.data(), m, k, &block_scaled, 1));
  EXPECT_FALSE(lib.product(x.data(), m, k, &partial, 1));
  EXPECT_FALSE(lib.product(x.data(), m, k + 1, &good, 1));  // k differs from the matrix's
  EXPECT_FALSE(lib.gated(x.data(), m, gate.view(), up.view(), y.data()));
  EXPECT_FALSE(lib.gated(x.data(), m, gate.view(), blocks.view(), y.data()));
  for (size_t e = 0; e < y.size(); ++e) ASSERT_EQ(y[e], 7.0f) << "written at " << e;
}

// The gated product: gemm_w8a8_amx over gate and up followed by the gating, bit for bit
// (odd m, gate's rows in 3 blocks so that jobs pair gate's and up's same rows, K in chunks).
TEST_P(W8a8Products, GeluMulIsTheProductsThenTheGating) {
  const Library& lib = GetParam();
  if (!lib.runs()) GTEST_SKIP() << "no " << lib.name << " in this build or process";
  for (const int64_t m : {17, 70}) {
    for (const int64_t k : {96, 4400}) {
      const int64_t n = 48;
      const auto x = random_matrix(m, k, 61);
      const auto gate = row_scaled(random_matrix(n, k, 62), n, k);
      const auto up = row_scaled(random_matrix(n, k, 63), n, k);
      std::vector<float> got(static_cast<size_t>(m * n), NAN), g(got.size()), u(got.size());
      ASSERT_TRUE(lib.gated(x.data(), m, gate.view(), up.view(), got.data()));
      const pg::kernels::MatmulOutput out[2] = {{gate.view(), nullptr, g.data()},
                                                {up.view(), nullptr, u.data()}};
      ASSERT_TRUE(lib.product(x.data(), m, k, out, 2));
      pg::kernels::gelu_tanh_mul_span(g.data(), u.data(), g.data(), m * n);
      for (size_t e = 0; e < got.size(); ++e) {
        ASSERT_TRUE(same_bits(got[e], g[e]))
            << "m " << m << " k " << k << " row " << e / n << " output " << e % n << ": got "
            << got[e] << ", want " << g[e];
      }
    }
  }
}

INSTANTIATE_TEST_SUITE_P(
    Libraries, W8a8Products,
    ::testing::Values(Library{"amx", pg::kernels::w8a8_products_run, pg::kernels::gemm_w8a8_amx,
                              pg::kernels::gemm_w8a8_amx_gelu_mul},
                      Library{"vnni", pg::kernels::w8a8_vnni_run, pg::kernels::gemm_w8a8_vnni,
                              pg::kernels::gemm_w8a8_vnni_gelu_mul}),
    [](const ::testing::TestParamInfo<Library>& info) { return std::string(info.param.name); });

}  // namespace
