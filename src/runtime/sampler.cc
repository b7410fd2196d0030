#include "runtime/sampler.h"

#include <algorithm>
#include <cmath>
#include <limits>

#include "base/parallel.h"
#include "kernels/kernels.h"

namespace pg::runtime {

int argmax(const float* logits, int64_t n) {
  return n <= 0 ? 0 : static_cast<int>(kernels::kernels().argmax(logits, n));
}

Sampler::Sampler(const SamplingOptions& options, int64_t allowed_vocab)
    : options_(options), allowed_vocab_(allowed_vocab), rng_(options.seed) {}

// Sampling: weights exp((logit - max) / temperature) in double over the finite logits (a
// NaN or infinite logit is never chosen). Without top-k or top-p the draw walks the
// weights in id order, so nothing is sorted (a sort of 257152 candidates took ~50 ms per
// token, more than a decode step); top-k sorts its k best (partial_sort) and top-p sorts
// only as many of the best as its mass needs, in batches growing fourfold.
int Sampler::sample(const float* logits) {
  if (options_.greedy || options_.temperature <= 0.0f) return argmax(logits, allowed_vocab_);
  const int64_t n = allowed_vocab_;
  // The largest finite logit: the vector argmax's, unless it found an infinity or NaN.
  float largest = logits[argmax(logits, n)];
  if (!std::isfinite(largest)) {
    largest = -std::numeric_limits<float>::infinity();
    for (int64_t i = 0; i < n; ++i) {
      if (std::isfinite(logits[i]) && logits[i] > largest) largest = logits[i];
    }
    if (!std::isfinite(largest)) return argmax(logits, n);  // no finite logit
  }
  const double top = largest, inv_t = 1.0 / options_.temperature;
  auto weight = [top, inv_t](float logit) {
    return std::exp((static_cast<double>(logit) - top) * inv_t);
  };
  // Candidates (logit, id) of the finite logits, for top-k and top-p.
  auto gather = [&] {
    candidates_.resize(static_cast<size_t>(n));
    std::pair<float, int>* out = candidates_.data();
    size_t count = 0;
    for (int64_t i = 0; i < n; ++i) {
      if (std::isfinite(logits[i])) out[count++] = {logits[i], static_cast<int>(i)};
    }
    candidates_.resize(count);
  };
  if (options_.top_k > 0) gather();
  std::uniform_real_distribution<double> uniform(0.0, 1.0);
  const bool top_k = options_.top_k > 0 && static_cast<size_t>(options_.top_k) < candidates_.size();
  const bool top_p = options_.top_p < 1.0f;

  double total = 0.0;
  if (!top_k) {
    // weights_[i] for every id (0 where not finite), summed per block of kBlock ids in a
    // fixed order (the same total on any number of threads).
    constexpr int64_t kBlock = 4096;
    const int64_t blocks = (n + kBlock - 1) / kBlock;
    weights_.resize(static_cast<size_t>(n));
    block_sums_.assign(static_cast<size_t>(blocks), 0.0);
    parallel_for(blocks, 1, [&](int64_t b0, int64_t b1) {
      for (int64_t b = b0; b < b1; ++b) {
        double sum = 0.0;
        for (int64_t i = b * kBlock; i < std::min(n, (b + 1) * kBlock); ++i) {
          const double w = std::isfinite(logits[i]) ? weight(logits[i]) : 0.0;
          weights_[static_cast<size_t>(i)] = w;
          sum += w;
        }
        block_sums_[static_cast<size_t>(b)] = sum;
      }
    });
    for (double sum : block_sums_) total += sum;
    if (!top_p) {
      const double u = uniform(rng_) * total;
      double below = 0.0;  // weight of the blocks before b
      int64_t b = 0;
      while (b + 1 < blocks && below + block_sums_[static_cast<size_t>(b)] <= u)
        below += block_sums_[static_cast<size_t>(b++)];
      int64_t last = -1;  // the last id with a weight (a draw past the total by rounding)
      for (int64_t i = b * kBlock; i < n; ++i) {
        const double w = weights_[static_cast<size_t>(i)];
        if (w <= 0.0) continue;
        below += w;
        last = i;
        if (u < below) return static_cast<int>(i);
      }
      return static_cast<int>(last >= 0 ? last : argmax(logits, n));
    }
  }

  // Candidates best first (by logit, then id).
  if (options_.top_k <= 0) gather();
  auto by_logit = [](const auto& a, const auto& b) {
    return a.first > b.first || (a.first == b.first && a.second < b.second);
  };
  const auto at = [&](size_t i) { return candidates_.begin() + static_cast<std::ptrdiff_t>(i); };
  size_t keep = candidates_.size();
  if (top_k) {
    keep = static_cast<size_t>(options_.top_k);  // the k best, sorted
    std::partial_sort(candidates_.begin(), at(keep), candidates_.end(), by_logit);
    for (size_t i = 0; i < keep; ++i) total += weight(candidates_[i].first);
  }
  // The shortest sorted prefix whose weight reaches top_p of the total (at least one).
  const double target = top_p ? static_cast<double>(options_.top_p) * total : total;
  probs_.clear();
  double mass = 0.0;
  for (size_t sorted = 0, batch = 256; sorted < keep && (probs_.empty() || !top_p || mass < target);
       batch *= 4) {
    const size_t end = top_k ? keep : std::min(keep, sorted + batch);
    if (!top_k) {
      if (end < keep) std::nth_element(at(sorted), at(end), at(keep), by_logit);
      std::sort(at(sorted), at(end), by_logit);
    }
    for (; sorted < end; ++sorted) {
      const double w = top_k ? weight(candidates_[sorted].first)
                             : weights_[static_cast<size_t>(candidates_[sorted].second)];
      probs_.push_back(w);
      mass += w;
      if (top_p && mass >= target) break;
    }
  }
  const double u = uniform(rng_) * mass;
  double below = 0.0;
  for (size_t i = 0; i < probs_.size(); ++i) {
    below += probs_[i];
    if (u < below) return candidates_[i].second;
  }
  return candidates_[probs_.size() - 1].second;
}

}  // namespace pg::runtime
