#include "runtime/sampler.h"

#include <algorithm>
#include <cmath>

#include "kernels/kernels.h"

namespace pg::runtime {

int argmax(const float* logits, int64_t n) {
  return n <= 0 ? 0 : static_cast<int>(kernels::kernels().argmax(logits, n));
}

Sampler::Sampler(const SamplingOptions& options, int64_t allowed_vocab)
    : options_(options), allowed_vocab_(allowed_vocab), rng_(options.seed) {}

int Sampler::sample(const float* logits) {
  if (options_.greedy || options_.temperature <= 0.0f) return argmax(logits, allowed_vocab_);

  // Candidates sorted by logit, best first; top-k keeps the first k.
  candidates_.clear();
  candidates_.reserve(static_cast<size_t>(allowed_vocab_));
  for (int64_t i = 0; i < allowed_vocab_; ++i) {
    if (std::isfinite(logits[i])) candidates_.emplace_back(logits[i], static_cast<int>(i));
  }
  if (candidates_.empty()) return argmax(logits, allowed_vocab_);
  size_t keep = candidates_.size();
  if (options_.top_k > 0) keep = std::min(keep, static_cast<size_t>(options_.top_k));
  auto by_logit = [](const auto& a, const auto& b) {
    return a.first > b.first || (a.first == b.first && a.second < b.second);
  };
  std::partial_sort(candidates_.begin(), candidates_.begin() + static_cast<std::ptrdiff_t>(keep),
                    candidates_.end(), by_logit);
  candidates_.resize(keep);

  // Softmax of logits / temperature, in double.
  std::vector<double> probs(keep);
  const double inv_t = 1.0 / options_.temperature;
  double sum = 0.0;
  for (size_t i = 0; i < keep; ++i) {
    probs[i] = std::exp((static_cast<double>(candidates_[i].first) - candidates_[0].first) * inv_t);
    sum += probs[i];
  }
  for (double& p : probs) p /= sum;

  // Top-p: the smallest prefix whose mass reaches top_p (at least one token).
  if (options_.top_p < 1.0f) {
    double mass = 0.0;
    size_t n = 0;
    while (n < keep) {
      mass += probs[n++];
      if (mass >= options_.top_p) break;
    }
    keep = std::max<size_t>(n, 1);
    probs.resize(keep);
  }

  std::discrete_distribution<size_t> dist(probs.begin(), probs.end());
  return candidates_[dist(rng_)].second;
}

}  // namespace pg::runtime
