// PaliGemma::forward with HiddenRows::kLast (what generation's prefill asks for): the last
// layer computes its queries, attention and MLP for the last row alone. Every row's keys
// and values still reach the cache bit for bit, so decoding goes on as after a full pass;
// the returned row is the full pass's last within float32 rounding (the last layer's
// products take one row instead of T).
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <random>
#include <string>
#include <utility>
#include <vector>

#include "base/parallel.h"
#include "model/gemma.h"
#include "model/paligemma.h"
#include "model/trace.h"
#include "test_util.h"

namespace pg::model {
namespace {

using pg::testing::testdata;

struct Case {
  const char* model;
  WeightType type;
};

class ForwardRowsTest : public ::testing::TestWithParam<Case> {};

std::vector<uint8_t> cache_bytes(KvCache& c, int64_t layers) {
  const size_t elem = c.dtype() == DType::kF32 ? 4 : 2;
  const size_t n = static_cast<size_t>(c.length() * c.width()) * elem;
  std::vector<uint8_t> out;
  for (int64_t l = 0; l < layers; ++l) {
    const auto* k = static_cast<const uint8_t*>(c.k(l));
    const auto* v = static_cast<const uint8_t*>(c.v(l));
    out.insert(out.end(), k, k + n);
    out.insert(out.end(), v, v + n);
  }
  return out;
}

TEST_P(ForwardRowsTest, LastRowAloneMatchesTheFullPassAndFillsTheSameCache) {
  auto m = PaliGemma::load(testdata(std::string("golden/") + GetParam().model), nullptr,
                           GetParam().type);
  ASSERT_TRUE(m.ok()) << m.status().message();
  const io::PaliGemmaConfig& c = (*m)->config();
  const int64_t S = c.vision.image_size, N = c.num_image_tokens(), H = c.text.hidden_size;
  std::mt19937 rng(3);
  std::uniform_real_distribution<float> px(-1.0f, 1.0f);
  Tensor pixels({c.vision.num_channels, S, S});
  for (int64_t i = 0; i < pixels.numel(); ++i) pixels.data()[i] = px(rng);
  std::vector<Tensor> images;
  images.push_back(std::move(pixels));
  const Tensor features = (*m)->image_features(images);
  std::vector<int> ids(static_cast<size_t>(N), static_cast<int>(c.image_token_index));
  ids.push_back(static_cast<int>(c.bos_token_id));
  for (int id : {10, 20, 30, 40, 50}) ids.push_back(id);
  const auto T = static_cast<int64_t>(ids.size());
  const int64_t prefix = T - 2;  // two causal rows after the bidirectional prefix

  KvCache all_cache = (*m)->new_cache(T + 1), last_cache = (*m)->new_cache(T + 1);
  const Tensor all = (*m)->forward(ids, &features, all_cache, prefix, HiddenRows::kAll);
  const Tensor last = (*m)->forward(ids, &features, last_cache, prefix, HiddenRows::kLast);
  ASSERT_EQ(all.dim(0), T);
  ASSERT_EQ(last.dim(0), 1);
  ASSERT_EQ(last.dim(1), H);
  ASSERT_EQ(last_cache.length(), T);
  EXPECT_TRUE(cache_bytes(all_cache, c.text.num_hidden_layers) ==
              cache_bytes(last_cache, c.text.num_hidden_layers));

  // Float32: the last layer's products over one row sum in another order than over T;
  // eps times the row's magnitude times the depth of the sums it passes through. The
  // low-precision modes quantize (or round) a lone row's activations their own way (the
  // decode path's), so there the two rows agree to the mode's error.
  const float* ref = all.row(T - 1);
  double max_abs = 0, worst = 0;
  int64_t worst_i = 0;
  for (int64_t i = 0; i < H; ++i) {
    max_abs = std::max(max_abs, std::fabs(double(ref[i])));
    const double d = std::fabs(double(ref[i]) - double(last.data()[i]));
    if (d > worst) worst = d, worst_i = i;
  }
  const double K = static_cast<double>(std::max(c.text.intermediate_size, H));
  const double tol = GetParam().type == WeightType::kF32    ? 8 * 1.2e-7 * std::sqrt(K) * max_abs
                     : GetParam().type == WeightType::kBF16 ? 0.02 * max_abs
                                                            : 0.08 * max_abs;
  EXPECT_LE(worst, tol) << "worst index " << worst_i << ": " << ref[worst_i] << " vs "
                        << last.data()[worst_i];

  // Decoding on from either cache gives the same step bit for bit.
  const Tensor a = (*m)->forward({60}, nullptr, all_cache, prefix);
  const Tensor b = (*m)->forward({60}, nullptr, last_cache, prefix);
  EXPECT_EQ(0, std::memcmp(a.data(), b.data(), static_cast<size_t>(H) * sizeof(float)));
}

// With a dump folder set, every row is traced: the last layer runs them all and the
// returned row is the full pass's, bit for bit.
TEST(ForwardRows, DumpingRunsEveryRow) {
  for (const char* model : {"tiny-pg1", "tiny-pg2"}) {
    auto m = PaliGemma::load(testdata(std::string("golden/") + model), nullptr, WeightType::kF32);
    ASSERT_TRUE(m.ok()) << m.status().message();
    const std::vector<int> ids = {2, 10, 20, 30, 40, 50, 60};
    const auto T = static_cast<int64_t>(ids.size());
    KvCache c1 = (*m)->new_cache(T), c2 = (*m)->new_cache(T);
    const Tensor all = (*m)->forward(ids, nullptr, c1, T);
    pg::testing::TempDir dir;
    set_dump_dir(dir.path());
    const Tensor last = (*m)->forward(ids, nullptr, c2, T, HiddenRows::kLast);
    set_dump_dir("");
    ASSERT_EQ(last.dim(0), 1) << model;
    EXPECT_EQ(0, std::memcmp(all.row(T - 1), last.data(),
                             static_cast<size_t>(all.dim(1)) * sizeof(float)))
        << model;
  }
}

// No tokens: no last row to return, an empty [0, H] as the full pass gives.
TEST(ForwardRows, NoTokensGiveNoRows) {
  auto m = PaliGemma::load(testdata("golden/tiny-pg1"), nullptr, WeightType::kInt8);
  ASSERT_TRUE(m.ok()) << m.status().message();
  KvCache cache = (*m)->new_cache(4);
  const Tensor h = (*m)->forward({}, nullptr, cache, 0, HiddenRows::kLast);
  EXPECT_EQ(h.dim(0), 0);
  EXPECT_EQ(cache.length(), 0);
}

// The MLP's runs of rows (gemma.h): they cover [0, T) in order, each within the buffer's
// `most` rows and none below the stated least (no run of a few rows, which would go as
// decode steps): 4107 rows at 512 as 448 and 464 alternating and a last 459.
TEST(ForwardRows, MlpRunsCoverTheRowsInNearEqualWholeTiles) {
  using Runs = std::vector<std::pair<int64_t, int64_t>>;
  EXPECT_EQ(mlp_row_runs(4107, 512), (Runs{{0, 448},
                                           {448, 464},
                                           {912, 448},
                                           {1360, 464},
                                           {1824, 448},
                                           {2272, 464},
                                           {2736, 448},
                                           {3184, 464},
                                           {3648, 459}}));
  EXPECT_EQ(mlp_row_runs(267, 512), (Runs{{0, 267}}));
  EXPECT_EQ(mlp_row_runs(0, 512), Runs{});
  EXPECT_EQ(mlp_row_runs(40, 15), (Runs{{0, 15}, {15, 15}, {30, 10}}));
  for (const int64_t most : {16, 17, 32, 100, 512, 513}) {
    for (int64_t T = 1; T <= 5000; T += T < 700 ? 1 : 37) {
      const Runs runs = mlp_row_runs(T, most);
      int64_t next = 0, least = T;
      for (const auto& [first, count] : runs) {
        ASSERT_EQ(first, next) << "T " << T << " most " << most;
        ASSERT_GT(count, 0) << "T " << T << " most " << most;
        ASSERT_LE(count, most) << "T " << T << " most " << most;
        next += count, least = std::min(least, count);
      }
      ASSERT_EQ(next, T) << "T " << T << " most " << most;
      if (T > most && most >= 32) {
        EXPECT_GE(least, 16 * (most / 32) - 15) << "T " << T << " most " << most;
      }
    }
  }
}

INSTANTIATE_TEST_SUITE_P(
    Models, ForwardRowsTest,
    ::testing::Values(Case{"tiny-pg1", WeightType::kF32}, Case{"tiny-pg1", WeightType::kBF16},
                      Case{"tiny-pg1", WeightType::kInt8}, Case{"tiny-pg2", WeightType::kF32},
                      Case{"tiny-pg2", WeightType::kInt8}, Case{"tiny-pg2", WeightType::kQ4}));

}  // namespace
}  // namespace pg::model
