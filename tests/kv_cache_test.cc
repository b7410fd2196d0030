// The KV cache: its storage per mode (bf16 where the weights are low precision), its
// size, and the rounding of new rows into a bf16 cache.
#include "model/kv_cache.h"

#include <gtest/gtest.h>

#include <cmath>
#include <cstring>
#include <limits>
#include <vector>

#include "model/paligemma.h"
#include "test_util.h"

namespace pg::model {
namespace {

TEST(KvCache, SizesPerDtype) {
  const KvCache f32(3, 10, 8);
  EXPECT_EQ(f32.dtype(), DType::kF32);
  EXPECT_EQ(f32.bytes(), 2 * 3 * 10 * 8 * 4);
  const KvCache bf16(3, 10, 8, DType::kBF16);
  EXPECT_EQ(bf16.bytes(), 2 * 3 * 10 * 8 * 2);
}

TEST(KvCache, Bf16RowsRoundToNearestEven) {
  KvCache cache(2, 4, 4, DType::kBF16);
  const float nan = std::numeric_limits<float>::quiet_NaN();
  // 1 + 2^-8 lies halfway between bf16 1 and 1 + 2^-7: even (1). 1 + 3 * 2^-8: up to
  // 1 + 2^-6. -2.75 is exact. 1 + 2^-8 + 2^-20: above halfway, up.
  const std::vector<float> k = {1.0f + 0x1p-8f, 1.0f + 0x3p-8f, -2.75f, 1.0f + 0x1p-8f + 0x1p-20f},
                           v = {nan, 0.0f, -0.0f, 3e38f};
  cache.store_bf16(1, 2, 1, k.data(), v.data());
  const auto* kd = static_cast<const uint16_t*>(cache.k(1)) + 2 * 4;
  const auto* vd = static_cast<const uint16_t*>(cache.v(1)) + 2 * 4;
  EXPECT_EQ(bf16_to_f32(kd[0]), 1.0f);
  EXPECT_EQ(bf16_to_f32(kd[1]), 1.0f + 0x1p-6f);
  EXPECT_EQ(bf16_to_f32(kd[2]), -2.75f);
  EXPECT_EQ(bf16_to_f32(kd[3]), 1.0f + 0x1p-7f);
  EXPECT_TRUE(std::isnan(bf16_to_f32(vd[0])));
  EXPECT_EQ(vd[1], 0x0000);
  EXPECT_EQ(vd[2], 0x8000);
  EXPECT_EQ(bf16_to_f32(vd[3]), bf16_to_f32(f32_to_bf16(3e38f)));
  // Other rows and layers untouched (zeros).
  const auto* layer0 = static_cast<const uint16_t*>(cache.k(0));
  for (int i = 0; i < 16; ++i) EXPECT_EQ(layer0[i], 0) << i;
  EXPECT_EQ(static_cast<const uint16_t*>(cache.k(1))[1 * 4], 0);
}

TEST(KvCache, Bf16OnlyWhereTheWeightsAreLowPrecision) {
  const std::string dir = pg::testing::testdata("golden/tiny-pg2");
  for (auto [type, want] :
       {std::pair{WeightType::kF32, DType::kF32}, std::pair{WeightType::kBF16, DType::kBF16},
        std::pair{WeightType::kInt8, DType::kBF16}, std::pair{WeightType::kQ4, DType::kBF16}}) {
    auto m = PaliGemma::load(dir, nullptr, type);
    ASSERT_TRUE(m.ok()) << m.status().message();
    const KvCache cache = (*m)->new_cache(16);
    EXPECT_EQ(cache.dtype(), want) << weight_type_name(type);
    const io::TextConfig& t = (*m)->config().text;
    EXPECT_EQ(cache.bytes(), 2 * t.num_hidden_layers * 16 * t.num_key_value_heads * t.head_dim *
                                 static_cast<int64_t>(dtype_size(want)));
  }
}

}  // namespace
}  // namespace pg::model
