// Low-precision weights: the block formats round-trip within half a quantization step,
// the quantized product matches the dequantized one within a derived bound, a quantized
// folder loads to the same numbers, and each mode's logit error on the golden prompts
// stays within its documented bound (README "Speed"), keeping greedy ids where the
// reference's top-2 margin leaves room.
#include "kernels/quant.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <bit>
#include <cfloat>
#include <cmath>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <random>
#include <utility>

#include "io/safetensors.h"
#include "kernels/amx_dequant.h"
#include "kernels/amx_gemm.h"
#include "kernels/kernels.h"
#include "model/paligemma.h"
#include "paligemma/paligemma.h"
#include "test_util.h"

namespace {

using pg::testing::random_matrix;
using pg::testing::testdata;

class QuantFormat : public ::testing::TestWithParam<pg::DType> {};

// Whether the quantized product of m rows takes AMX tiles (amx_gemm.h): x rounded to bf16
// times the weights dequantized to bf16, from 16 rows where the tiles run.
bool amx_tiles(int64_t m) { return m >= 16 && pg::kernels::amx_products_run(); }

// Whether the quantized product of m rows of x takes the int8 x int8 prefill tiles.
bool prefill_tiles(int64_t m) {
#if defined(__AVX512VNNI__) && defined(__AVX512BW__)
  return m > 8 && !amx_tiles(m);
#else
  (void)m;
  return false;
#endif
}

// ceil(log2(t)) for t > 0, exactly (frexp: t = f 2^e, f in [0.5, 1)); very negative for 0.
int ceil_log2(float t) {
  if (!(t > 0)) return -1000;
  int e = 0;
  const float f = std::frexp(t, &e);
  return f == 0.5f ? e - 1 : e;
}

// x [m, k] quantized to int8 per block of 32 as the products document it (quant_gemm.h,
// README "Speed"): codes q (x ~= q * step) and each block's step, [m, nb]. The dot
// products (m <= 8) take step = amax / 127; the prefill tiles take the row's unit (its
// largest block's amax / 127, at least 2^-100, over 2^12) times 2^shift, shift the least
// in [0, 12] with amax / step <= 127.
struct QuantizedX {
  std::vector<int> q;
  std::vector<float> step;
};
QuantizedX quantize_x(const std::vector<float>& x, int64_t m, int64_t k) {
  const int64_t nb = pg::quant_blocks(k);
  QuantizedX out{std::vector<int>(static_cast<size_t>(m * k)),
                 std::vector<float>(static_cast<size_t>(m * nb))};
  for (int64_t i = 0; i < m; ++i) {
    float row_max = 0;
    for (int64_t c = 0; c < k; ++c) row_max = std::max(row_max, std::fabs(x[i * k + c]));
    const float unit = std::max(row_max / 127.0f, 0x1p-100f) * (1.0f / 4096);
    const float inv_unit = 1.0f / unit;
    for (int64_t b = 0; b < nb; ++b) {
      const int64_t c0 = b * 32, c1 = std::min(k, c0 + 32);
      float amax = 0;
      for (int64_t c = c0; c < c1; ++c) amax = std::max(amax, std::fabs(x[i * k + c]));
      float step = 0, inv = 0;
      if (prefill_tiles(m)) {
        const int shift = std::clamp(ceil_log2(amax * inv_unit / 127.0f), 0, 12);
        step = std::ldexp(unit, shift);
        inv = inv_unit * std::ldexp(1.0f, -shift);
      } else {
        step = amax / 127.0f;
        inv = step > 0 ? 1.0f / step : 0.0f;
      }
      out.step[static_cast<size_t>(i * nb + b)] = step;
      for (int64_t c = c0; c < c1; ++c) {
        out.q[static_cast<size_t>(i * k + c)] =
            std::clamp(static_cast<int>(std::nearbyint(x[i * k + c] * inv)), -127, 127);
      }
    }
  }
  return out;
}

TEST_P(QuantFormat, RoundTripWithinHalfAStep) {
  for (int64_t cols : {1, 31, 32, 33, 100, 257}) {
    const int64_t rows = 5;
    auto w = random_matrix(rows, cols, static_cast<uint64_t>(cols));
    const pg::MatrixView src{pg::DType::kF32, w.data(), rows, cols, nullptr};
    const auto q = GetParam() == pg::DType::kI8 ? pg::kernels::quantize_q8(src)
                                                : pg::kernels::quantize_q4(src);
    const pg::MatrixView v = q.view();
    std::vector<float> row(static_cast<size_t>(cols));
    for (int64_t r = 0; r < rows; ++r) {
      pg::dequantize_row(v, r, row.data());
      for (int64_t c = 0; c < cols; ++c) {
        const float step = std::fabs(v.scales[r * pg::quant_blocks(cols) + c / pg::kQuantBlock]);
        // q8 rounds to the nearest step; q4 also clamps the value opposite to the block's
        // extreme at code 15 (7 steps where 8 were needed): at most one step off.
        const float bound = (GetParam() == pg::DType::kI8 ? 0.5f : 1.0f) * step * (1 + 1e-5f);
        EXPECT_LE(std::fabs(row[c] - w[r * cols + c]), bound) << "r " << r << " c " << c;
      }
    }
  }
}

// quantize_q8 / quantize_q4 take whole blocks in vector registers; their scalar twin
// (quantize_reference) must give the same codes and scales, bit for bit, over widths with
// and without a short last block and groups of 16 blocks, rows of every source format, and
// blocks holding ties of magnitude (q4 takes the first), zeros, -0, subnormals, infinities
// and NaNs (each at a different place in its block).
TEST_P(QuantFormat, VectorBlocksMatchTheScalarTwin) {
  const float specials[] = {0.0f, -0.0f, 1e-40f, -1e-40f, INFINITY, -INFINITY, NAN,
                            3.0f, -3.0f, 127.0f, -8.0f,   FLT_MAX,  -FLT_MAX,  0.4999999f};
  for (const int64_t cols : {1, 31, 32, 33, 64, 100, 512, 513, 544, 2048}) {
    const int64_t rows = 7;
    auto w = random_matrix(rows, cols, static_cast<uint64_t>(1000 + cols));
    std::mt19937 rng(static_cast<uint32_t>(cols));
    // Row 0: one block of zeros then all -0; row 1: ties of magnitude; rows 2-4: specials
    // scattered; rows 5-6 as drawn.
    for (int64_t c = 0; c < cols; ++c) w[static_cast<size_t>(c)] = c < 32 ? 0.0f : -0.0f;
    for (int64_t c = 0; c < cols; ++c)
      w[static_cast<size_t>(cols + c)] = (c % 3 == 0 ? -2.0f : 2.0f);
    for (int64_t r = 2; r < 5; ++r) {
      for (int i = 0; i < 6; ++i) {
        const auto c = static_cast<int64_t>(rng() % static_cast<uint32_t>(cols));
        w[static_cast<size_t>(r * cols + c)] = specials[rng() % std::size(specials)];
      }
    }
    for (const pg::DType source : {pg::DType::kF32, pg::DType::kBF16}) {
      std::vector<uint16_t> bf(w.size());
      for (size_t i = 0; i < w.size(); ++i) bf[i] = pg::f32_to_bf16(w[i]);
      const pg::MatrixView src{source,
                               source == pg::DType::kF32 ? static_cast<const void*>(w.data())
                                                         : static_cast<const void*>(bf.data()),
                               rows, cols, nullptr};
      const auto fast = GetParam() == pg::DType::kI8 ? pg::kernels::quantize_q8(src)
                                                     : pg::kernels::quantize_q4(src);
      const auto ref = pg::kernels::quantize_reference(src, GetParam());
      ASSERT_EQ(fast.data.size(), ref.data.size());
      ASSERT_EQ(fast.scales.size(), ref.scales.size());
      for (size_t i = 0; i < ref.data.size(); ++i) {
        ASSERT_EQ(fast.data[i], ref.data[i])
            << "cols " << cols << " byte " << i << " (row "
            << i / static_cast<size_t>(fast.view().row_bytes()) << ")";
      }
      for (size_t i = 0; i < ref.scales.size(); ++i) {
        ASSERT_EQ(std::bit_cast<uint32_t>(fast.scales[i]), std::bit_cast<uint32_t>(ref.scales[i]))
            << "cols " << cols << " scale " << i << ": " << fast.scales[i] << " against "
            << ref.scales[i];
      }
    }
  }
}

TEST_P(QuantFormat, ProductMatchesTheDequantizedOne) {
  // The quantized product rounds the activations to int8 per block of 32 (error at most
  // half a step per element), so |y - y_ref| <= sum_c |w_c| * step_x(c) / 2 plus float
  // rounding.
  // m > 8 takes the prefill product: on VNNI, int8 x int8 register tiles of 48 rows by 4
  // columns, 32 by 6 and (m <= 16 only) 16 by 12, as many of 48 as leave a rest of whole
  // tiles of 32 (m = 9: one of 16; 20: one of 32; 33, 48: one of 48; 49: two of 32; 70: 48 +
  // 32; 96: two of 48; 100: 48 + 32 + 32; all but 48 and 96 with padded rows in the last).
  // n = 37 to 41 leave a last tile of 1 to 5 columns (and 1 to 4 of the 48-row tiles' 4:
  // 40 none); the threads share the columns in groups of 12.
  // (k, n):
  constexpr std::pair<int64_t, int64_t> kProductShapes[] = {
      {32, 37},  {33, 40},   {96, 41},   {100, 37}, {160, 40}, {300, 41},
      {512, 37}, {1000, 40}, {1000, 41}, {32, 39},  {160, 38}};
  for (int64_t m : {1, 3, 9, 20, 33, 48, 49, 70, 96, 100}) {
    for (const auto& [k, n] : kProductShapes) {
      auto w = random_matrix(n, k, 7);
      auto x = random_matrix(m, k, 8);
      const pg::MatrixView src{pg::DType::kF32, w.data(), n, k, nullptr};
      const auto q = GetParam() == pg::DType::kI8 ? pg::kernels::quantize_q8(src)
                                                  : pg::kernels::quantize_q4(src);
      std::vector<float> got(static_cast<size_t>(m * n)), want(static_cast<size_t>(m * n));
      pg::kernels::fast_kernels().matmul(x.data(), m, q.view(), nullptr, got.data());
      pg::kernels::reference_kernels().matmul(x.data(), m, q.view(), nullptr, want.data());
      const QuantizedX qx = quantize_x(x, m, k);
      std::vector<float> wrow(static_cast<size_t>(k));
      for (int64_t j = 0; j < n; ++j) {
        pg::dequantize_row(q.view(), j, wrow.data());
        for (int64_t i = 0; i < m; ++i) {
          double bound = 0;
          for (int64_t b = 0; b < pg::quant_blocks(k); ++b) {
            const double half_step = qx.step[i * pg::quant_blocks(k) + b] / 2.0;
            for (int64_t c = b * 32; c < std::min(k, (b + 1) * 32); ++c) {
              const double wx = std::fabs(wrow[c] * x[i * k + c]);
              // AMX tiles: x and w each rounded to bf16 (2^-9 relative), float32 sums.
              bound += amx_tiles(m) ? wx * (0x1p-8 + (k + 2) * FLT_EPSILON)
                                    : std::fabs(wrow[c]) * half_step + 4 * FLT_EPSILON * wx;
            }
          }
          EXPECT_LE(std::fabs(got[i * n + j] - want[i * n + j]), bound)
              << "m " << m << " k " << k << " i " << i << " j " << j;
        }
      }
    }
  }
}

TEST_P(QuantFormat, Int8ProductsMatchTheirExactIntegerSums) {
  // Where the activations are quantized (m <= 8 everywhere; larger m on VNNI, a partial
  // last block zero-padded), each block's sum of q_x * q_w is an exact integer, so the result must
  // equal sum_b scale_x * scale_w * sum_q up to float rounding of the nb scaled terms. This
  // catches what the looser bound against the float product cannot: one unit off in a sum.
  // The q8 dot products (m <= 8) take weights as unsigned (w + 128) and subtract the 128 *
  // sum(q_x) that adds as a float term per block, so that term's size joins their rounding
  // bound; a second pass gives every block of x values in +- pairs (block sums of q_x
  // exactly 0), where that term vanishes and the bound is the plain one again, sharp enough
  // for one unit off. A third pass spreads the blocks' magnitudes over 2^-30 to 1 and makes
  // one row zero: the prefill tiles' shifts are clamped at 0 for blocks under 2^-12 of
  // their row's largest, and the largest are shifted by 12 (sums near 2^31 for q8).
  enum class Values { kRandom, kPaired, kSpread };
  for (const Values values : {Values::kRandom, Values::kPaired, Values::kSpread}) {
    const bool paired = values == Values::kPaired, spread = values == Values::kSpread;
    // (m = 16: a single tile of 16 rows by 12 columns; 33: one of 48 rows by 4, 15 of them
    // padding; 49: two of 32 by 6, the last with 15; 70: 48 + 32; 100: 48 + 32 + 32; 267:
    // five of 48 and one of 32 with 5 rows padding. 37 columns leave a last tile of one.)
    for (int64_t m : {1, 3, 9, 16, 33, 48, 49, 70, 100, 267}) {
      if (spread && m != 3 && m != 49 && m != 267) continue;
      // (q4 interleaves groups of 16 blocks: k = 590 ends in a group of 3 blocks, the last
      // partial, and 2304 in one of 8 after four whole groups.)
      for (int64_t k : {32, 33, 100, 160, 512, 590, 1000, 1024, 2304}) {
        if (spread && k != 100 && k != 1024 && k != 2304) continue;
#if !defined(__AVX512VNNI__) || !defined(__AVX512BW__)
        if (m > 8) continue;  // bf16 panels there
#endif
        if (amx_tiles(m)) continue;  // bf16 tiles there: AmxTilesMatchTheBf16Product
        const int64_t n = 37, nb = pg::quant_blocks(k);
        auto w = random_matrix(n, k, 21);
        auto x = random_matrix(m, k, 22);
        if (spread) {
          // Block b of a row scaled by 2^-(7b mod 31); row 1 zero. Row 0 is the signs of
          // weight row 0, whose values are +-1: their first block's sum of codes is 31 *
          // 127 * 127, shifted by 12 (2.05e9 < 2^31; block 31 of k = 1024, unscaled and without the
          // zero column, 32 * 127 * 127 * 4096 = 2.11e9). Row 2's first value is 2^16 and the
          // weights' first column 0, so its other blocks (clamped to shift 0) alone make
          // its products, and the bound is sharp for them.
          for (int64_t c = 0; c < k; ++c) {
            w[c] = w[c] < 0 ? -1.0f : 1.0f;
            x[c] = w[c];
          }
          for (int64_t i = 0; i < m; ++i) {
            for (int64_t c = 0; c < k; ++c) {
              x[i * k + c] =
                  i == 1 ? 0.0f : std::ldexp(x[i * k + c], -static_cast<int>(7 * (c / 32) % 31));
            }
          }
          if (m > 2) x[2 * k] = 0x1p16f;
          // Row 3 at 2^-96: its largest |x| / 127 is under the 2^-100 floor of the row's
          // unit, so its largest block takes a shift of 9, not 12.
          for (int64_t c = 0; m > 3 && c < k; ++c) x[3 * k + c] = std::ldexp(x[3 * k + c], -96);
          for (int64_t j = 0; j < n; ++j) w[j * k] = 0;
        }
        if (paired) {  // within each block, value c + 1 = -value c (an odd last one is 0)
          for (int64_t i = 0; i < m; ++i) {
            for (int64_t c = 0; c < k; c += 2) {
              if (c + 1 < k && (c + 1) / 32 == c / 32) {
                x[i * k + c + 1] = -x[i * k + c];
              } else {
                x[i * k + c] = 0;
              }
            }
          }
        }
        const pg::MatrixView src{pg::DType::kF32, w.data(), n, k, nullptr};
        const auto q = GetParam() == pg::DType::kI8 ? pg::kernels::quantize_q8(src)
                                                    : pg::kernels::quantize_q4(src);
        const pg::MatrixView v = q.view();
        std::vector<float> got(static_cast<size_t>(m * n));
        pg::kernels::fast_kernels().matmul(x.data(), m, v, nullptr, got.data());
        // x's codes and steps, as documented.
        const QuantizedX quantized = quantize_x(x, m, k);
        const std::vector<int>& qx = quantized.q;
        const std::vector<float>& sx = quantized.step;
        std::vector<float> wrow(static_cast<size_t>(k));
        for (int64_t j = 0; j < n; ++j) {
          pg::dequantize_row(v, j, wrow.data());
          for (int64_t i = 0; i < m; ++i) {
            double want = 0, mag = 0;
            for (int64_t b = 0; b < nb; ++b) {
              const float sw = v.scales[j * nb + b];
              int64_t sum = 0, qsum = 0;  // weight codes: w / sw is an exact small integer
              for (int64_t c = b * 32; c < std::min(k, (b + 1) * 32); ++c) {
                sum += qx[i * k + c] * std::lrint(wrow[c] / sw);
                qsum += qx[i * k + c];
              }
              if (paired) {
                EXPECT_EQ(qsum, 0) << "block " << b;
              }
              const double s = static_cast<double>(sx[i * nb + b]) * sw;
              want += s * static_cast<double>(sum);
              // The dot products (m <= 8) sum unsigned weights, q4's codes (w / sw + 8) and
              // q8's w + 128, and subtract 8 or 128 * sum(q_x) as a float term: both parts
              // are rounded, so both count towards the rounding bound. The prefill tiles
              // take x + 128 and subtract 128 * sum(q_w) from the int32 sum: exact.
              const int64_t offset = m > 8 ? 0 : GetParam() == pg::DType::kU8 ? 8 : 128;
              mag += std::fabs(s * static_cast<double>(sum + offset * qsum)) +
                     std::fabs(s * static_cast<double>(offset * qsum));
            }
            const double bound = mag * (2 * nb + 4) * FLT_EPSILON + 1e-30;
            EXPECT_NEAR(got[i * n + j], want, bound)
                << "m " << m << " k " << k << " i " << i << " j " << j;
          }
        }
      }
    }
  }
}

// Prefill-sized m over many panels of weight rows, each multiplied into its columns of y.
// The bf16 path (matmul_quantized_panels, for CPUs without VNNI): K = 8200 makes panels of
// 511 rows (the last of N = 1100 is partial) and ends each row in a partial block; x and W
// are rounded to bf16, so each product is off by at most 2^-8 |x w| (plus float32
// accumulation). The int8 x int8 path (kernels' matmul on VNNI): panels of 48 (K = 8192) or
// 42 rows split over the threads, x quantized per block of 32 (each element off by at most
// half its block's step, quantize_x), K = 8200's last block zero-padded.
void check_prefill_panels(pg::DType dtype, int64_t k, bool panels) {
  const int64_t m = 17, n = 1100;
  const auto w = random_matrix(n, k, 11), x = random_matrix(m, k, 12);
  const pg::MatrixView src{pg::DType::kF32, w.data(), n, k, nullptr};
  const auto q =
      dtype == pg::DType::kI8 ? pg::kernels::quantize_q8(src) : pg::kernels::quantize_q4(src);
  const pg::MatrixView v = q.view();
  std::vector<float> bias = random_matrix(1, n, 13);
  // Per row of x and block: half an int8 step of the activations.
#if defined(__AVX512VNNI__) && defined(__AVX512BW__)
  const bool int8_path = !panels && !amx_tiles(m);
#else
  const bool int8_path = false;
#endif
  const QuantizedX qx = quantize_x(x, m, k);
  std::vector<double> half_step(qx.step.begin(), qx.step.end());
  for (double& h : half_step) h /= 2;
  std::vector<float> got(static_cast<size_t>(m * n), NAN);
  if (panels) {
    pg::kernels::matmul_quantized_panels(x.data(), m, v, bias.data(), got.data());
  } else {
    pg::kernels::kernels().matmul(x.data(), m, v, bias.data(), got.data());
  }
  std::vector<float> row(static_cast<size_t>(k));
  int bad = 0;
  for (int64_t j = 0; j < n; ++j) {
    pg::dequantize_row(v, j, row.data());
    for (int64_t i = 0; i < m; ++i) {
      double want = bias[j], mag = 0, int8_err = 0;
      for (int64_t c = 0; c < k; ++c) {
        want += static_cast<double>(x[i * k + c]) * row[c];
        mag += std::fabs(static_cast<double>(x[i * k + c]) * row[c]);
        int8_err +=
            std::fabs(row[c]) * half_step[static_cast<size_t>(i * pg::quant_blocks(k) + c / 32)];
      }
      // The path's rounding (int8 activations or bf16 panels), plus float32 sums.
      const double bound = (int8_path ? int8_err * (1 + 1e-5) : mag * std::ldexp(1.0, -8)) +
                           mag * (k + 2) * FLT_EPSILON + 4 * FLT_EPSILON * std::fabs(want);
      if (!(std::fabs(got[i * n + j] - want) <= bound) && bad++ < 5) {
        ADD_FAILURE() << "i " << i << " j " << j << ": got " << got[i * n + j] << ", want " << want
                      << " +- " << bound;
      }
    }
  }
  EXPECT_EQ(bad, 0) << "k " << k << (panels ? " (bf16 panels)" : "");
}

TEST_P(QuantFormat, SlotsAreAPermutationOfTheColumns) {
  // amx_dequant.h: slot u of a row is column quant_slot_column(nb, u), each column once;
  // dequantize_slots_bf16 gives each slot its column's dequantized value rounded to bf16,
  // bit for bit, over whole groups, a partial last group (k = 590: 3 blocks after one
  // group; 1000: 16 then 16 with the last short; 2304: 8 after four) and a range of groups
  // that starts past the row's first.
  for (const int64_t k : {32, 33, 100, 590, 1000, 2304}) {
    const int64_t n = 3, nb = pg::quant_blocks(k);
    std::vector<int> seen(static_cast<size_t>(nb * 32), 0);
    for (int64_t u = 0; u < nb * 32; ++u) {
      const int64_t c = pg::kernels::quant_slot_column(nb, u);
      ASSERT_TRUE(c >= 0 && c < nb * 32) << "k " << k << " slot " << u;
      ++seen[static_cast<size_t>(c)];
    }
    EXPECT_TRUE(std::all_of(seen.begin(), seen.end(), [](int v) { return v == 1; })) << k;
    const auto w = random_matrix(n, k, 31);
    const pg::MatrixView src{pg::DType::kF32, w.data(), n, k, nullptr};
    const auto q = GetParam() == pg::DType::kI8 ? pg::kernels::quantize_q8(src)
                                                : pg::kernels::quantize_q4(src);
    std::vector<float> dense(static_cast<size_t>(nb * 32), 0.0f);
    for (int64_t r = 0; r < n; ++r) {
      pg::dequantize_row(q.view(), r, dense.data());
      for (const int64_t b0 : {int64_t{0}, int64_t{16}}) {
        if (b0 >= nb) continue;
        std::vector<uint16_t> got(static_cast<size_t>((nb - b0) * 32), 0xffff);
        pg::kernels::dequantize_slots_bf16(q.view(), r, b0, nb, got.data());
        for (int64_t u = b0 * 32; u < nb * 32; ++u) {
          const int64_t column = pg::kernels::quant_slot_column(nb, u);
          const uint16_t g = got[static_cast<size_t>(u - b0 * 32)];
          if (column >= k) {  // a short last block's padding: zero (of either sign)
            ASSERT_EQ(pg::bf16_to_f32(g), 0.0f) << "k " << k << " row " << r << " slot " << u;
            continue;
          }
          ASSERT_EQ(g, pg::f32_to_bf16(dense[static_cast<size_t>(column)]))
              << "k " << k << " row " << r << " slot " << u;
        }
      }
    }
  }
}

TEST_P(QuantFormat, AmxTilesMatchTheBf16Product) {
  // Where AMX tiles run (m >= 16), the quantized product is x rounded to bf16 times the
  // weights dequantized and rounded to bf16, summed in float32 (in the slots' order):
  // each output within float32 summation error of that sum in double. Sharp enough for
  // a slot of x paired with another's weight or a block's scale on the wrong codes: k
  // ends in partial groups (590, 2304) and blocks (33, 8200, which also goes in chunks);
  // n = 37 ends in a partial block of weight rows; m = 17, 50 in partial blocks of x;
  // n = 600 (19 jobs of two blocks) gives a thread several jobs in turn, each dequantized
  // between the products of the one before it.
  if (!pg::kernels::amx_products_run()) GTEST_SKIP() << "no AMX tiles in this build or process";
  for (const int64_t m : {16, 17, 50}) {
    for (const int64_t k : {32, 33, 590, 2304, 8200}) {
      if (k == 8200 && m != 17) continue;
      const int64_t n = m == 50 && k == 590 ? 600 : 37, nb = pg::quant_blocks(k);
      const auto w = random_matrix(n, k, 41), x = random_matrix(m, k, 42);
      const auto bias = random_matrix(1, n, 43);
      const pg::MatrixView src{pg::DType::kF32, w.data(), n, k, nullptr};
      const auto q = GetParam() == pg::DType::kI8 ? pg::kernels::quantize_q8(src)
                                                  : pg::kernels::quantize_q4(src);
      std::vector<float> got(static_cast<size_t>(m * n), NAN);
      pg::kernels::fast_kernels().matmul(x.data(), m, q.view(), bias.data(), got.data());
      std::vector<float> wrow(static_cast<size_t>(nb * 32));
      auto bf16 = [](float v) { return pg::bf16_to_f32(pg::f32_to_bf16(v)); };
      int bad = 0;
      for (int64_t j = 0; j < n; ++j) {
        pg::dequantize_row(q.view(), j, wrow.data());
        for (int64_t i = 0; i < m; ++i) {
          double want = bias[j], mag = std::fabs(bias[j]);
          for (int64_t c = 0; c < k; ++c) {
            const double p = static_cast<double>(bf16(x[i * k + c])) * bf16(wrow[c]);
            want += p;
            mag += std::fabs(p);
          }
          const double bound = 2 * (k + 2) * FLT_EPSILON * mag;
          if (!(std::fabs(got[i * n + j] - want) <= bound) && bad++ < 5) {
            ADD_FAILURE() << "m " << m << " k " << k << " i " << i << " j " << j << ": got "
                          << got[i * n + j] << ", want " << want << " +- " << bound;
          }
        }
      }
      EXPECT_EQ(bad, 0) << "m " << m << " k " << k;
    }
  }
}

TEST_P(QuantFormat, PrefillPanelsCoverEveryColumn) {
  check_prefill_panels(GetParam(), 8200, /*panels=*/true);
  check_prefill_panels(GetParam(), 8200, /*panels=*/false);
  check_prefill_panels(GetParam(), 8192, /*panels=*/false);
}

TEST_P(QuantFormat, DecodeProductsAreTheSameWithAndWithoutPrefetch) {
  // The software prefetch (on or off by CPU, quant.h) must not change a value: decode-sized
  // products (m <= 8) with it forced on and off agree bit for bit, over row counts that
  // leave a single row after the pairs and widths that end in a partial group or block.
  for (const int64_t m : {1, 2, 5, 8}) {
    for (const int64_t n : {7, 64, 301}) {
      for (const int64_t k : {32, 100, 590, 2304}) {
        const auto q =
            GetParam() == pg::DType::kI8
                ? pg::kernels::quantize_q8({pg::DType::kF32, random_matrix(n, k, 31).data(), n, k})
                : pg::kernels::quantize_q4({pg::DType::kF32, random_matrix(n, k, 31).data(), n, k});
        const auto x = random_matrix(m, k, 32);
        const auto bias = random_matrix(1, n, 33);
        std::vector<float> y[2];
        for (int mode = 0; mode < 2; ++mode) {
          pg::kernels::set_decode_prefetch(mode);
          y[mode].assign(static_cast<size_t>(m * n), -1.0f);
          pg::kernels::matmul_quantized(x.data(), m, q.view(), bias.data(), y[mode].data());
        }
        pg::kernels::set_decode_prefetch(-1);
        for (size_t i = 0; i < y[0].size(); ++i) {
          ASSERT_EQ(std::bit_cast<uint32_t>(y[0][i]), std::bit_cast<uint32_t>(y[1][i]))
              << "m " << m << " n " << n << " k " << k << " index " << i << ": " << y[0][i]
              << " without prefetch, " << y[1][i] << " with";
        }
      }
    }
  }
}

INSTANTIATE_TEST_SUITE_P(Formats, QuantFormat, ::testing::Values(pg::DType::kI8, pg::DType::kU8),
                         [](const auto& info) {
                           return info.param == pg::DType::kI8 ? "q8" : "q4";
                         });

// Documented bounds (README, "Speed"): max |logit - f32 logit| at the last prompt
// position, relative to the f32 logits' max-abs, on the golden prompts.
struct Mode {
  const char* dtype;
  double max_rel_error;
};
constexpr Mode kModes[] = {{"bf16", 0.02}, {"int8", 0.08}, {"q4", 1.0}, {"w8a8", 0.12}};

TEST(QuantQuality, GoldenLogitErrorsWithinDocumentedBounds) {
  for (const std::string& name : pg::testing::golden_model_cases()) {
    const std::string dir = testdata("golden/" + name);
    std::ifstream f(dir + "/expected.json");
    const auto expected = nlohmann::json::parse(f);
    paligemma::LoadOptions f32_opt;
    f32_opt.dtype = "f32";
    auto ref = paligemma::Model::load(dir, f32_opt);
    ASSERT_TRUE(ref.ok()) << ref.status().message();
    for (const Mode& mode : kModes) {
      paligemma::LoadOptions opt;
      opt.dtype = mode.dtype;
      auto low = paligemma::Model::load(dir, opt);
      ASSERT_TRUE(low.ok()) << low.status().message();
      double worst_rel = 0, sum_sq = 0, sum_ref_sq = 0;
      for (const auto& p : expected["prompts"]) {
        paligemma::GenerateOptions g;
        g.max_tokens = static_cast<int64_t>(p["generated_ids"].size());
        g.keep_logits = true;
        auto a = ref->generate({dir + "/image.png"}, p["prompt"], g);
        auto b = low->generate({dir + "/image.png"}, p["prompt"], g);
        ASSERT_TRUE(a.ok() && b.ok());
        const int64_t V = ref->info().vocab_size;
        double max_abs_ref = 0, max_err = 0;
        for (int64_t v = 0; v < V; ++v) {
          max_abs_ref = std::max(max_abs_ref, std::fabs(double(a->logits[v])));
          max_err = std::max(max_err, std::fabs(double(a->logits[v]) - b->logits[v]));
          sum_sq += std::pow(double(a->logits[v]) - b->logits[v], 2);
          sum_ref_sq += std::pow(double(a->logits[v]), 2);
        }
        const double rel = max_err / max_abs_ref;
        worst_rel = std::max(worst_rel, rel);
        // Greedy ids must agree where the reference's margin is more than twice the
        // largest error this mode may make.
        const double margin = p["min_top2_margin"];
        if (std::string(mode.dtype) != "q4" && margin > 2 * mode.max_rel_error * max_abs_ref) {
          EXPECT_EQ(a->ids, b->ids) << name << " " << mode.dtype << " prompt " << p["prompt"];
        }
      }
      // Greedy ids are only required to match for bf16, int8 and w8a8.
      std::printf("[quality] %-9s %-5s max |err| / max|logit| = %.2e, relative RMS error = %.2e\n",
                  name.c_str(), mode.dtype, worst_rel, std::sqrt(sum_sq / sum_ref_sq));
      EXPECT_LE(worst_rel, mode.max_rel_error) << name << " " << mode.dtype;
    }
  }
}

// Four greedy tokens of a caption from both models: the same ids and the same logits, bit
// for bit.
void expect_same_caption(paligemma::Model& a, paligemma::Model& b, const std::string& dir,
                         const std::string& what) {
  paligemma::GenerateOptions g;
  g.max_tokens = 4;
  g.keep_logits = true;
  auto ra = a.generate({dir + "/image.png"}, "caption en", g);
  auto rb = b.generate({dir + "/image.png"}, "caption en", g);
  ASSERT_TRUE(ra.ok() && rb.ok()) << what;
  EXPECT_EQ(ra->logits, rb->logits) << what;
  EXPECT_EQ(ra->ids, rb->ids) << what;
}

TEST(QuantFolder, LoadsToTheSameNumbersWithoutRequantising) {
  pg::testing::TempDir tmp;
  const std::string dir = testdata("golden/tiny-pg1");
  // (w8a8: the folder's q8 matrices must come back with one scale per row, or the
  // in-memory model's w8a8 products would part from the folder's block products.)
  for (const char* dtype : {"int8", "q4", "w8a8"}) {
    const std::string out = tmp.file(dtype);
    ASSERT_TRUE(paligemma::quantize(dir, dtype, out).ok());
    paligemma::LoadOptions opt;
    opt.dtype = dtype;
    auto in_memory = paligemma::Model::load(dir, opt);
    auto from_file = paligemma::Model::load(out);
    ASSERT_TRUE(in_memory.ok() && from_file.ok()) << from_file.status().message();
    EXPECT_TRUE(from_file->warnings().empty());
    expect_same_caption(*in_memory, *from_file, dir, dtype);
    // No Hugging Face loader mistakes the folder for a checkpoint of its own.
    EXPECT_FALSE(std::filesystem::exists(out + "/model.safetensors"));
    // The folder's q8 matrices come back flagged as w8a8 (and as plain q8 for int8), and
    // a w8a8 folder loaded as int8 is its codes read as q8 (no second rounding).
    auto as_stored = pg::model::PaliGemma::load(out, nullptr);
    ASSERT_TRUE(as_stored.ok());
    const bool w8a8 = std::string(dtype) == "w8a8";
    const pg::model::PaliGemmaWeights& w = (*as_stored)->weights();
    EXPECT_EQ(w.text.layers[0].gate_proj.row_scales, w8a8) << dtype;
    EXPECT_EQ(w.vision.layers[0].fc1.row_scales, w8a8) << dtype;
    if (w8a8) {
      auto as_int8 = pg::model::PaliGemma::load(out, nullptr, pg::model::WeightType::kInt8);
      ASSERT_TRUE(as_int8.ok());
      const pg::MatrixView& g = (*as_int8)->weights().text.layers[0].gate_proj;
      const pg::MatrixView& stored = w.text.layers[0].gate_proj;
      EXPECT_FALSE(g.row_scales);
      EXPECT_EQ(std::memcmp(g.data, stored.data, static_cast<size_t>(g.rows * g.row_bytes())), 0);
    }
  }
}

// A w8a8 folder whose scales differ within a row (a damaged or hand-made file) is an error
// that names the tensor, not a product with the wrong scales.
TEST(QuantFolder, W8a8FolderWithUnequalScalesIsAnError) {
  pg::testing::TempDir tmp;
  const std::string dir = testdata("golden/tiny-pg1"), out = tmp.file("w8a8");
  ASSERT_TRUE(paligemma::quantize(dir, "w8a8", out).ok());
  const std::string file = out + "/model.pgq.safetensors";
  std::fstream f(file, std::ios::in | std::ios::out | std::ios::binary);
  uint64_t header_size = 0;
  f.read(reinterpret_cast<char*>(&header_size), 8);
  std::string header(header_size, ' ');
  f.read(header.data(), static_cast<std::streamsize>(header_size));
  const auto j = nlohmann::json::parse(header);
  const std::string name = "language_model.model.layers.0.mlp.gate_proj.weight.scales";
  ASSERT_TRUE(j.contains(name));
  const auto begin = j[name]["data_offsets"][0].get<uint64_t>();
  float second = 0;  // row 0's second block
  f.seekg(static_cast<std::streamoff>(8 + header_size + begin + 4));
  f.read(reinterpret_cast<char*>(&second), 4);
  second *= 2;
  f.seekp(static_cast<std::streamoff>(8 + header_size + begin + 4));
  f.write(reinterpret_cast<const char*>(&second), 4);
  f.close();
  auto loaded = paligemma::Model::load(out);
  ASSERT_FALSE(loaded.ok());
  EXPECT_NE(loaded.status().message().find("language_model.model.layers.0.mlp.gate_proj.weight"),
            std::string::npos)
      << loaded.status().message();
  EXPECT_NE(loaded.status().message().find("differ within a row"), std::string::npos);
}

// The layout of folders before format_version 2: each block's bytes together (q8 rows of
// cols bytes, q4 rows of 16 per block with byte i = code i | code 16 + i << 4). From
// today's (tensor.h, written out here from its documentation): in a group of n blocks from
// g0, byte i of block j = byte 4j + i % 4 of run i / 4, 4n bytes a run.
std::vector<uint8_t> to_block_layout(pg::DType dtype, const uint8_t* codes, int64_t rows,
                                     int64_t cols) {
  const int64_t nb = pg::quant_blocks(cols), bb = dtype == pg::DType::kI8 ? 32 : 16;
  const int64_t row_bytes = nb * bb, old_row = dtype == pg::DType::kI8 ? cols : row_bytes;
  std::vector<uint8_t> out(static_cast<size_t>(rows * old_row));
  for (int64_t r = 0; r < rows; ++r) {
    for (int64_t c = 0; c < old_row; ++c) {
      const int64_t b = c / bb, i = c % bb, g0 = b / 16 * 16, n = std::min<int64_t>(16, nb - g0);
      out[r * old_row + c] = codes[r * row_bytes + g0 * bb + i / 4 * 4 * n + 4 * (b - g0) + i % 4];
    }
  }
  return out;
}

TEST_P(QuantFormat, BlockLayoutRepacksToTheGroupLayout) {
  for (int64_t cols : {32, 33, 100, 512, 590, 2304}) {
    const int64_t rows = 3;
    const auto w = random_matrix(rows, cols, 5);
    const pg::MatrixView src{pg::DType::kF32, w.data(), rows, cols};
    const auto q = GetParam() == pg::DType::kI8 ? pg::kernels::quantize_q8(src)
                                                : pg::kernels::quantize_q4(src);
    const std::vector<uint8_t> old = to_block_layout(GetParam(), q.data.data(), rows, cols);
    const auto back = pg::kernels::from_block_layout(GetParam(), old.data(), rows, cols);
    ASSERT_EQ(back.size(), q.data.size());
    for (size_t i = 0; i < back.size(); ++i) ASSERT_EQ(back[i], q.data[i]) << cols << " byte " << i;
  }
}

// A quantized folder as format_version 1 wrote it (block layout, no "block_layout" in the
// metadata) loads to the same numbers as today's.
TEST(QuantFolder, FolderOfFormatVersion1StillLoads) {
  pg::testing::TempDir tmp;
  const std::string dir = testdata("golden/tiny-pg1");
  auto original = pg::io::TensorStore::open_dir(dir);
  ASSERT_TRUE(original.ok()) << original.status().message();
  for (const char* dtype : {"int8", "q4"}) {
    const std::string now = tmp.file(std::string(dtype) + "-v2");
    const std::string then = tmp.file(std::string(dtype) + "-v1");
    ASSERT_TRUE(paligemma::quantize(dir, dtype, now).ok());
    auto store = pg::io::TensorStore::open_file(now + "/model.pgq.safetensors");
    ASSERT_TRUE(store.ok()) << store.status().message();
    EXPECT_EQ(store->metadata().at("block_layout"), "groups16");
    std::vector<pg::io::TensorToWrite> tensors;
    std::vector<std::vector<uint8_t>> keep;
    int repacked = 0;  // matrices whose bytes differ between the layouts (nb > 1)
    for (const auto& [name, view] : store->tensors()) {
      if (view.dtype == pg::DType::kI8 || view.dtype == pg::DType::kU8) {
        const auto* scales = store->find(name + ".scales");
        ASSERT_NE(scales, nullptr) << name;
        const int64_t rows = view.shape[0], nb = scales->shape[1];
        // cols: the original checkpoint's (a short last block changes q8's old row length);
        // the LM head, not stored there, has the hidden size's whole blocks.
        const pg::TensorView* orig = original->find(name);
        const int64_t cols = orig != nullptr ? orig->numel() / orig->shape[0] : nb * 32;
        keep.push_back(
            to_block_layout(view.dtype, static_cast<const uint8_t*>(view.data), rows, cols));
        repacked += keep.back().size() != view.nbytes() ||
                    std::memcmp(keep.back().data(), view.data, keep.back().size()) != 0;
        pg::Shape shape = view.shape;
        shape[1] = static_cast<int64_t>(keep.back().size()) / rows;
        tensors.push_back({name, view.dtype, shape, keep.back().data()});
      } else {
        tensors.push_back({name, view.dtype, view.shape, view.data});
      }
    }
    EXPECT_GT(repacked, 0);
    std::ifstream cf(now + "/config.json");
    auto config = nlohmann::json::parse(cf);
    EXPECT_EQ(config["paligemma_cpp"]["format_version"], 2);
    // A folder of these tensors, with the metadata's block_layout set to `layout` ("":
    // none, as format_version 1 wrote).
    auto write_folder = [&](const std::string& out, const std::string& layout) {
      std::map<std::string, std::string> metadata = store->metadata();
      metadata.erase("block_layout");
      if (!layout.empty()) metadata["block_layout"] = layout;
      std::filesystem::create_directories(out);
      ASSERT_TRUE(
          pg::io::write_safetensors(out + "/model.pgq.safetensors", tensors, metadata).ok());
      std::filesystem::copy_file(now + "/tokenizer.model", out + "/tokenizer.model");
      auto c = config;
      c["paligemma_cpp"]["format_version"] = layout.empty() ? 1 : 2;
      std::ofstream(out + "/config.json") << c.dump(2);
    };
    write_folder(then, "");
    auto a = paligemma::Model::load(now);
    auto b = paligemma::Model::load(then);
    ASSERT_TRUE(a.ok() && b.ok()) << b.status().message();
    expect_same_caption(*a, *b, dir, dtype);

    // A layout this build does not know is refused, naming the tensor, file and layout.
    const std::string unknown = tmp.file(std::string(dtype) + "-groups32");
    write_folder(unknown, "groups32");
    auto u = paligemma::Model::load(unknown);
    ASSERT_FALSE(u.ok());
    EXPECT_NE(u.status().message().find("model.pgq.safetensors: unknown block_layout \"groups32\""),
              std::string::npos)
        << u.status().message();
    // Codes in the old layout under today's label: q8's unpadded rows (the patch embedding's
    // 588 columns, 19 blocks) do not have today's shape.
    if (std::string(dtype) == "int8") {
      const std::string mislabelled = tmp.file("int8-mislabelled");
      write_folder(mislabelled, "groups16");
      auto m = paligemma::Model::load(mislabelled);
      ASSERT_FALSE(m.ok());
      EXPECT_NE(m.status().message().find("vision_tower.vision_model.embeddings.patch_embedding."
                                          "weight' in "),
                std::string::npos)
          << m.status().message();
      EXPECT_NE(m.status().message().find("expected I8 codes of shape [48, 608], found [48, 588]"),
                std::string::npos)
          << m.status().message();
    }
  }
}

TEST(QuantFolder, BadDtypeIsAnError) {
  pg::testing::TempDir tmp;
  const paligemma::Status st =
      paligemma::quantize(testdata("golden/tiny-pg1"), "int3", tmp.file("x"));
  ASSERT_FALSE(st.ok());
  EXPECT_NE(st.message().find("unknown weight type \"int3\""), std::string::npos) << st.message();
}

}  // namespace
