// Choosing the next token from logits: greedy, or sampling with temperature, top-k and
// top-p (nucleus) from a seeded generator. Only ids in [0, allowed_vocab) are ever
// chosen (never the <image> token or the embedding's padding rows).
#pragma once

#include <cstdint>
#include <random>
#include <vector>

namespace pg::runtime {

struct SamplingOptions {
  bool greedy = true;
  float temperature = 1.0f;  // <= 0 means greedy
  int top_k = 0;             // 0: no limit
  float top_p = 1.0f;        // 1: no limit
  uint64_t seed = 0;
};

class Sampler {
 public:
  Sampler(const SamplingOptions& options, int64_t allowed_vocab);
  // logits: [n] with n >= allowed_vocab.
  int sample(const float* logits);

 private:
  SamplingOptions options_;
  int64_t allowed_vocab_;
  std::mt19937_64 rng_;
  std::vector<std::pair<float, int>> candidates_;  // (logit, id)
  std::vector<double> weights_, block_sums_, probs_;
};

// Index of the largest of logits[0, n) (the first one on ties, as torch.argmax).
int argmax(const float* logits, int64_t n);

}  // namespace pg::runtime
