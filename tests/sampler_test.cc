// Token choice: greedy, top-k, top-p, temperature, seeds, and the vocabulary limit.
#include "runtime/sampler.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <limits>
#include <vector>

namespace {

using pg::runtime::Sampler;
using pg::runtime::SamplingOptions;

TEST(Sampler, GreedyPicksTheFirstMaximum) {
  const std::vector<float> logits{0.5f, 2.0f, 2.0f, -1.0f};
  Sampler s(SamplingOptions{}, 4);
  EXPECT_EQ(s.sample(logits.data()), 1);
}

TEST(Sampler, NeverChoosesIdsBeyondTheAllowedVocabulary) {
  const std::vector<float> logits{0.0f, 1.0f, 100.0f, 200.0f};  // ids 2, 3: <image>, padding
  Sampler greedy(SamplingOptions{}, 2);
  EXPECT_EQ(greedy.sample(logits.data()), 1);
  SamplingOptions o;
  o.greedy = false;
  o.temperature = 100.0f;
  Sampler hot(o, 2);
  for (int i = 0; i < 200; ++i) EXPECT_LT(hot.sample(logits.data()), 2);
}

TEST(Sampler, TopKOneIsGreedy) {
  const std::vector<float> logits{0.1f, 0.3f, 0.2f, 0.25f};
  SamplingOptions o;
  o.greedy = false;
  o.top_k = 1;
  Sampler s(o, 4);
  for (int i = 0; i < 50; ++i) EXPECT_EQ(s.sample(logits.data()), 1);
}

TEST(Sampler, TinyTopPIsGreedy) {
  const std::vector<float> logits{0.1f, 0.3f, 0.2f, 0.25f};
  SamplingOptions o;
  o.greedy = false;
  o.top_p = 1e-6f;
  Sampler s(o, 4);
  for (int i = 0; i < 50; ++i) EXPECT_EQ(s.sample(logits.data()), 1);
}

TEST(Sampler, TopPKeepsTheSmallestSetReachingTheMass) {
  // Probabilities 0.5, 0.3, 0.2 (temperature 1): top_p 0.7 keeps ids 0 and 1 only.
  const std::vector<float> logits{std::log(0.5f), std::log(0.3f), std::log(0.2f)};
  SamplingOptions o;
  o.greedy = false;
  o.top_p = 0.7f;
  o.seed = 3;
  Sampler s(o, 3);
  int seen[3] = {0, 0, 0};
  for (int i = 0; i < 2000; ++i) ++seen[s.sample(logits.data())];
  EXPECT_EQ(seen[2], 0);
  EXPECT_GT(seen[0], 0);
  EXPECT_GT(seen[1], 0);
}

TEST(Sampler, FrequenciesFollowTheSoftmax) {
  // p = (0.25, 0.75); n = 4000 draws: the count of id 1 has sd sqrt(n p (1-p)) ~ 27.
  const std::vector<float> logits{0.0f, std::log(3.0f)};
  SamplingOptions o;
  o.greedy = false;
  o.seed = 11;
  Sampler s(o, 2);
  int ones = 0;
  const int n = 4000;
  for (int i = 0; i < n; ++i) ones += s.sample(logits.data());
  EXPECT_NEAR(ones, 0.75 * n, 5 * std::sqrt(n * 0.75 * 0.25));
}

TEST(Sampler, TemperatureSharpens) {
  // Temperature 0.5 squares the odds: p(1) = 9 / 10.
  const std::vector<float> logits{0.0f, std::log(3.0f)};
  SamplingOptions o;
  o.greedy = false;
  o.temperature = 0.5f;
  o.seed = 5;
  Sampler s(o, 2);
  int ones = 0;
  const int n = 4000;
  for (int i = 0; i < n; ++i) ones += s.sample(logits.data());
  EXPECT_NEAR(ones, 0.9 * n, 5 * std::sqrt(n * 0.9 * 0.1));
}

TEST(Sampler, SameSeedSameSequence) {
  std::vector<float> logits(50);
  for (int i = 0; i < 50; ++i) logits[i] = std::sin(i * 0.7f);
  SamplingOptions o;
  o.greedy = false;
  o.seed = 42;
  Sampler a(o, 50), b(o, 50);
  std::vector<int> sa, sb;
  for (int i = 0; i < 30; ++i) {
    sa.push_back(a.sample(logits.data()));
    sb.push_back(b.sample(logits.data()));
  }
  EXPECT_EQ(sa, sb);
  o.seed = 43;
  Sampler c(o, 50);
  std::vector<int> sc;
  for (int i = 0; i < 30; ++i) sc.push_back(c.sample(logits.data()));
  EXPECT_NE(sa, sc);
}

// A vocabulary of many blocks (the weights are summed per 4096 ids): three ids far apart
// carry probabilities 0.2, 0.3, 0.5; the rest are masked (-inf) or NaN, never chosen.
TEST(Sampler, LargeVocabularyFrequencies) {
  const int vocab = 20000;
  std::vector<float> logits(vocab, -std::numeric_limits<float>::infinity());
  for (int i = 7; i < vocab; i += 97) logits[i] = std::numeric_limits<float>::quiet_NaN();
  const int ids[3] = {5, 9000, 19999};
  const double p[3] = {0.2, 0.3, 0.5};
  for (int j = 0; j < 3; ++j) logits[ids[j]] = std::log(static_cast<float>(p[j]));
  SamplingOptions o;
  o.greedy = false;
  o.seed = 17;
  Sampler s(o, vocab);
  int seen[3] = {0, 0, 0};
  const int n = 3000;
  for (int i = 0; i < n; ++i) {
    const int id = s.sample(logits.data());
    const int j = id == ids[0] ? 0 : id == ids[1] ? 1 : id == ids[2] ? 2 : -1;
    ASSERT_GE(j, 0) << "chose id " << id;
    ++seen[j];
  }
  for (int j = 0; j < 3; ++j) EXPECT_NEAR(seen[j], p[j] * n, 5 * std::sqrt(n * p[j] * (1 - p[j])));
}

// 3000 equal logits, top_p 0.5: the prefix (best first, ties by id) is ids 0-1499, past
// the first sorted batch of 256; 2000 more ids are masked.
TEST(Sampler, TopPOverManyCandidates) {
  std::vector<float> logits(5000, -std::numeric_limits<float>::infinity());
  for (int i = 0; i < 3000; ++i) logits[i] = 1.0f;
  SamplingOptions o;
  o.greedy = false;
  o.top_p = 0.5f;
  o.seed = 9;
  Sampler s(o, 5000);
  int highest = 0, upper_half = 0;
  for (int i = 0; i < 2000; ++i) {
    const int id = s.sample(logits.data());
    highest = std::max(highest, id);
    upper_half += id >= 750;
  }
  EXPECT_LT(highest, 1500);
  EXPECT_NEAR(upper_half, 1000, 5 * std::sqrt(2000 * 0.25));  // uniform over 0-1499
}

// top_k 1000 of 4000 distinct logits (logit = id / 1000): only ids 3000-3999, in
// proportion to exp(id / 1000) (the top 500 of them carry e^0.5 / (e^0.5 + 1) ~ 0.62).
TEST(Sampler, TopKOverManyCandidates) {
  std::vector<float> logits(4000);
  for (int i = 0; i < 4000; ++i) logits[i] = static_cast<float>(i) / 1000.0f;
  SamplingOptions o;
  o.greedy = false;
  o.top_k = 1000;
  o.seed = 21;
  Sampler s(o, 4000);
  int lowest = 4000, top_half = 0;
  const int n = 2000;
  for (int i = 0; i < n; ++i) {
    const int id = s.sample(logits.data());
    lowest = std::min(lowest, id);
    top_half += id >= 3500;
  }
  EXPECT_GE(lowest, 3000);
  const double q = std::exp(0.5) / (std::exp(0.5) + 1.0);
  EXPECT_NEAR(top_half, q * n, 5 * std::sqrt(n * q * (1 - q)));
}

}  // namespace
