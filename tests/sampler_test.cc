// Token choice: greedy, top-k, top-p, temperature, seeds, and the vocabulary limit.
#include "runtime/sampler.h"

#include <gtest/gtest.h>

#include <cmath>
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

}  // namespace
