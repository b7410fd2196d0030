// The first token's roofline (runtime/bench.h): the products' shapes account for every
// FLOP of the count by config, and each op is charged at the peak of its arithmetic or at
// the memory bandwidth, whichever is slower.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <string>

#include "io/config.h"
#include "runtime/bench.h"

namespace pg::runtime {
namespace {

using model::WeightType;

io::PaliGemmaConfig preset(const std::string& name) {
  for (const auto& [n, json] : builtin_presets()) {
    if (n == name) {
      auto c = io::parse_config(json, name);
      EXPECT_TRUE(c.ok()) << c.status().message();
      return *c;
    }
  }
  ADD_FAILURE() << "no preset " << name;
  return {};
}

struct Case {
  const char* preset;
  WeightType type;
};

class FirstTokenRooflineTest : public ::testing::TestWithParam<Case> {};

double product_flops(const FirstTokenWork& w) {
  double f = 0;
  for (const auto& p : w.products) f += 2 * p.rows * p.out * p.in;
  return f;
}

TEST_P(FirstTokenRooflineTest, ProductsAndAttentionAreEveryFlop) {
  const io::PaliGemmaConfig c = preset(GetParam().preset);
  model::PaliGemmaWeights w = model::random_weights(c, GetParam().type, 1);
  const int64_t T = c.num_image_tokens() + 11;
  const FirstTokenWork work = first_token_work(c, w, T);
  // Vision layers (6 matrices each), patch embedding, projector, decoder layers (7 each),
  // LM head.
  EXPECT_EQ(work.products.size(), static_cast<size_t>(6 * c.vision.num_hidden_layers + 2 +
                                                      7 * c.text.num_hidden_layers + 1));
  EXPECT_NEAR(product_flops(work) + work.attention_flops, work.flops, 1e-12 * work.flops);
  EXPECT_EQ(work.products.back().rows, 1.0);  // the LM head: the last position only
  // The last decoder layer (q, k, v, o, gate, up, down): keys and values of every row, the
  // rest for the last row alone (model::HiddenRows::kLast); the layer before it, all rows.
  const double T_rows = static_cast<double>(T);
  const double last[7] = {1, T_rows, T_rows, 1, 1, 1, 1};
  for (int i = 0; i < 7; ++i) {
    EXPECT_EQ(work.products[work.products.size() - 8 + i].rows, last[i]) << i;
    EXPECT_EQ(work.products[work.products.size() - 15 + i].rows, T_rows) << i;
  }
  EXPECT_EQ(work.products.back().out, static_cast<double>(c.text.vocab_size));
  for (const auto& p : work.products) EXPECT_GT(p.bytes, 0.0);
}

TEST_P(FirstTokenRooflineTest, EachOpAtItsPeakOrTheBandwidth) {
  const io::PaliGemmaConfig c = preset(GetParam().preset);
  const WeightType type = GetParam().type;
  model::PaliGemmaWeights w = model::random_weights(c, type, 1);
  const FirstTokenWork work = first_token_work(c, w, c.num_image_tokens() + 11);
  kernels::Roofline peaks;
  peaks.f32_gflops = 100, peaks.bf16_gflops = 200, peaks.int8_gops = 400;
  const bool low_bit = type == WeightType::kInt8 || type == WeightType::kQ4;
  const double product_peak = (type == WeightType::kF32 ? 100 : low_bit ? 400 : 200) * 1e9;
  const double attention_peak = (type == WeightType::kF32 ? 100 : 200) * 1e9;

  // No bandwidth: arithmetic only, attention at its own peak.
  const FirstTokenRoofline compute = first_token_roofline(work, type, peaks);
  EXPECT_NEAR(compute.compute_s, work.flops / product_peak, 1e-12 * compute.compute_s);
  const double ops = product_flops(work) / product_peak + work.attention_flops / attention_peak;
  EXPECT_NEAR(compute.ops_s, ops, 1e-12 * ops);
  if (low_bit) {
    EXPECT_GT(compute.ops_s, compute.compute_s);
  } else {
    EXPECT_NEAR(compute.ops_s, compute.compute_s, 1e-12 * ops);
  }

  // A bandwidth: each product pays its bytes where they take longer than its arithmetic.
  peaks.bandwidth_gbs = 0.01;
  const FirstTokenRoofline with_memory = first_token_roofline(work, type, peaks);
  double expected = work.attention_flops / attention_peak;
  for (const auto& p : work.products)
    expected += std::max(2 * p.rows * p.out * p.in / product_peak, p.bytes / 1e7);
  EXPECT_NEAR(with_memory.ops_s, expected, 1e-12 * expected);
  EXPECT_GT(with_memory.ops_s, compute.ops_s);
  EXPECT_EQ(with_memory.compute_s, compute.compute_s);

  // The mode's unit is missing (the CPU or build lacks the instructions): its products
  // are held to the float32 peak, attention too.
  kernels::Roofline f32_only;
  f32_only.f32_gflops = 100;
  const FirstTokenRoofline fallback = first_token_roofline(work, type, f32_only);
  EXPECT_NEAR(fallback.compute_s, work.flops / 100e9, 1e-12 * fallback.compute_s);
  const double f32_ops = (product_flops(work) + work.attention_flops) / 100e9;
  EXPECT_NEAR(fallback.ops_s, f32_ops, 1e-12 * f32_ops);

  // No probe ran: none.
  kernels::Roofline none;
  EXPECT_EQ(first_token_roofline(work, type, none).ops_s, 0.0);
  EXPECT_EQ(first_token_roofline(work, type, none).compute_s, 0.0);
}

INSTANTIATE_TEST_SUITE_P(Presets, FirstTokenRooflineTest,
                         ::testing::Values(Case{"tiny-pg1", WeightType::kF32},
                                           Case{"tiny-pg1", WeightType::kBF16},
                                           Case{"tiny-pg1", WeightType::kInt8},
                                           Case{"tiny-pg2", WeightType::kQ4},
                                           Case{"tiny-pg2", WeightType::kBF16}));

}  // namespace
}  // namespace pg::runtime
