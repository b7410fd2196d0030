// src/tensor: dtypes and their conversions, Tensor, and the reference decoding of every
// weight format (dequantize_row), checked against values worked out by hand.
#include "tensor/tensor.h"

#include <gtest/gtest.h>

#include <cmath>
#include <cstdint>
#include <limits>
#include <vector>

#include "base/memory.h"
#include "tensor/dtype.h"

namespace pg {
namespace {

TEST(DType, NamesRoundTrip) {
  for (DType d : {DType::kF32, DType::kBF16, DType::kF16, DType::kF64, DType::kI64, DType::kI32,
                  DType::kI16, DType::kI8, DType::kU8, DType::kBool}) {
    const auto back = dtype_from_name(dtype_name(d));
    ASSERT_TRUE(back.has_value()) << dtype_name(d);
    EXPECT_EQ(*back, d);
  }
  EXPECT_FALSE(dtype_from_name("F8_E4M3").has_value());
  EXPECT_EQ(dtype_size(DType::kBF16), 2u);
  EXPECT_EQ(dtype_size(DType::kF64), 8u);
}

TEST(DType, Bf16RoundsToNearestEven) {
  EXPECT_EQ(f32_to_bf16(1.0f), 0x3f80);
  // 1 + 2^-8 lies halfway between bf16 1.0 and 1.0078125: ties go to the even (1.0).
  EXPECT_EQ(f32_to_bf16(1.0f + 1.0f / 256), 0x3f80);
  // 1 + 3 * 2^-8 lies halfway between 1.0078125 (odd) and 1.015625 (even).
  EXPECT_EQ(f32_to_bf16(1.0f + 3.0f / 256), 0x3f82);
  EXPECT_EQ(bf16_to_f32(0xc040), -3.0f);
  EXPECT_TRUE(std::isnan(bf16_to_f32(f32_to_bf16(std::numeric_limits<float>::quiet_NaN()))));
  EXPECT_EQ(bf16_to_f32(f32_to_bf16(std::numeric_limits<float>::infinity())),
            std::numeric_limits<float>::infinity());
}

TEST(DType, F16ConvertsNormalsSubnormalsAndLimits) {
  EXPECT_EQ(f16_to_f32(0x3c00), 1.0f);
  EXPECT_EQ(f16_to_f32(0xc000), -2.0f);
  EXPECT_EQ(f16_to_f32(0x7bff), 65504.0f);               // largest normal
  EXPECT_EQ(f16_to_f32(0x0001), std::ldexp(1.0f, -24));  // smallest subnormal
  EXPECT_EQ(f16_to_f32(0x7c00), std::numeric_limits<float>::infinity());
  for (uint16_t h : {0x0000, 0x0001, 0x03ff, 0x0400, 0x3555, 0x7bff, 0x8001, 0xfbff})
    EXPECT_EQ(f32_to_f16(f16_to_f32(h)), h) << std::hex << h;
}

TEST(Tensor, IsZeroFilledAndReshapes) {
  Tensor t({3, 5});
  EXPECT_EQ(t.numel(), 15);
  EXPECT_EQ(t.rank(), 2);
  EXPECT_EQ(t.dim(-1), 5);
  for (int64_t i = 0; i < t.numel(); ++i) ASSERT_EQ(t.data()[i], 0.0f) << i;
  t.row(2)[4] = 7.0f;
  t.reshape({5, 3});
  EXPECT_EQ(t.row(4)[2], 7.0f);
  EXPECT_EQ(shape_to_string(t.shape()), "[5, 3]");
  // Large tensors too: with freed memory kept for reuse (as models run), a later tensor
  // gets an earlier one's dirtied block and must still read zeros.
  keep_freed_memory();
  for (int round = 0; round < 3; ++round) {
    Tensor big({1024, 4096});
    for (int64_t i = 0; i < big.numel(); i += 997) ASSERT_EQ(big.data()[i], 0.0f) << i;
    for (int64_t i = 0; i < big.numel(); ++i) big.data()[i] = 1.0f;
  }
}

TEST(Tensor, FromViewConvertsStoredTypes) {
  const std::vector<uint16_t> bf = {0x3f80, 0xc040};  // 1, -3
  Tensor a = Tensor::from_view(TensorView{DType::kBF16, {2}, bf.data()});
  EXPECT_EQ(a.data()[0], 1.0f);
  EXPECT_EQ(a.data()[1], -3.0f);
  const std::vector<uint16_t> h = {0x3800, 0xbc00};  // 0.5, -1
  Tensor b = Tensor::from_view(TensorView{DType::kF16, {1, 2}, h.data()});
  EXPECT_EQ(b.data()[0], 0.5f);
  EXPECT_EQ(b.data()[1], -1.0f);
}

TEST(Tensor, DequantizeRowFollowsTheDocumentedFormats) {
  // q8: 2 rows x 33 columns: two blocks (the second short, padded), one group of n = 2,
  // so eight runs of 8 bytes: byte 4j + i of run t = code 4t + i of block j.
  std::vector<int8_t> q8(2 * 64);
  auto q8_code = [](int64_t r, int64_t c) { return static_cast<int8_t>(r * 33 + c - 40); };
  for (int64_t r = 0; r < 2; ++r) {
    for (int64_t c = 0; c < 33; ++c) {
      const int64_t b = c / 32, i = c % 32;
      q8[static_cast<size_t>(r * 64 + (i / 4) * 8 + 4 * b + i % 4)] = q8_code(r, c);
    }
  }
  const std::vector<float> s8 = {0.5f, 2.0f, 0.25f, 4.0f};
  MatrixView w8{DType::kI8, q8.data(), 2, 33, s8.data()};
  EXPECT_EQ(w8.row_bytes(), 64);
  std::vector<float> out(33);
  dequantize_row(w8, 1, out.data());
  EXPECT_EQ(out[0], (33 - 40) * 0.25f);
  EXPECT_EQ(out[31], (64 - 40) * 0.25f);
  EXPECT_EQ(out[32], (65 - 40) * 4.0f);      // block 1 of row 1
  EXPECT_EQ(q8[64 + 8 + 1], q8_code(1, 5));  // row 1, block 0, code 5: run 1, lane 0
  EXPECT_EQ(q8[64 + 4], q8_code(1, 32));     // row 1, block 1, code 0: run 0, lane 1
  for (int64_t c = 0; c < 33; ++c) EXPECT_EQ(out[c], q8_code(1, c) * s8[2 + c / 32]) << c;

  // q4: one row of 32 codes: byte j = code j | code j + 16 << 4; w = (code - 8) * scale.
  std::vector<uint8_t> q4(16);
  for (int j = 0; j < 16; ++j) q4[j] = static_cast<uint8_t>(j | ((15 - j) << 4));
  const std::vector<float> s4 = {0.5f};
  MatrixView w4{DType::kU8, q4.data(), 1, 32, s4.data()};
  dequantize_row(w4, 0, out.data());
  for (int j = 0; j < 16; ++j) {
    EXPECT_EQ(out[j], (j - 8) * 0.5f) << j;
    EXPECT_EQ(out[16 + j], (15 - j - 8) * 0.5f) << 16 + j;
  }
  EXPECT_EQ(w4.row_bytes(), 16);
  EXPECT_EQ(w4.total_bytes(), 16 + 4);

  // q4 with 18 blocks: a group of 16 (four runs of 64 bytes) and one of 2 (four runs of 8
  // bytes, from byte 256); byte i of a block holds codes i and 16 + i. Code c of block b: in run (c
  // % 16) / 4 of its group, at byte 4 * (b - g0) + c % 4; low nibble for c < 16.
  const int64_t nb = 18, cols = nb * 32;
  std::vector<uint8_t> g(static_cast<size_t>(nb * 16));
  std::vector<float> sg(nb);
  auto code = [](int64_t b, int64_t c) { return static_cast<int>((b + 3 * c) % 16); };
  for (int64_t b = 0; b < nb; ++b) {
    sg[static_cast<size_t>(b)] = 0.25f * static_cast<float>(b + 1);
    const int64_t g0 = b < 16 ? 0 : 16, n = b < 16 ? 16 : 2;
    for (int64_t c = 0; c < 32; ++c) {
      uint8_t& byte = g[static_cast<size_t>(g0 * 16 + (c % 16) / 4 * 4 * n + 4 * (b - g0) + c % 4)];
      byte |= static_cast<uint8_t>(c < 16 ? code(b, c) : code(b, c) << 4);
    }
  }
  EXPECT_EQ(g[69], code(1, 5) | code(1, 21) << 4);      // block 1, codes 5 / 21: run 1
  EXPECT_EQ(g[287], code(17, 15) | code(17, 31) << 4);  // block 17, codes 15 / 31: last byte
  MatrixView wg{DType::kU8, g.data(), 1, cols, sg.data()};
  std::vector<float> row(static_cast<size_t>(cols));
  dequantize_row(wg, 0, row.data());
  for (int64_t c = 0; c < cols; ++c) {
    ASSERT_EQ(row[static_cast<size_t>(c)],
              static_cast<float>(code(c / 32, c % 32) - 8) * sg[static_cast<size_t>(c / 32)])
        << c;
  }
}

}  // namespace
}  // namespace pg
