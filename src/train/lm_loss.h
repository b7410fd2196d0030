// The prefix-LM loss (SPEC section 2): cross-entropy of every suffix token and the EOS,
// each predicted from the position before it, through the (tied) LM head and Gemma 2's
// final logit soft-capping.
#pragma once

#include <cstdint>
#include <vector>

#include "train/params.h"

namespace pg::train {

struct LossSum {
  double nll = 0.0;    // summed negative log-likelihood
  int64_t tokens = 0;  // predicted tokens
};

// hidden: [m, H] final-normed rows -> logits [m, V] (soft-capped for Gemma 2).
Tensor lm_logits(const ModelParams& p, const float* hidden, int64_t m);

// hidden: [T, H], ids: [T]. Rows t in [first, T - 1) predict ids[t + 1]. When dhidden
// ([T, H], zero-filled by the caller) is non-null, it receives d(grad_scale * nll)/d hidden
// and the LM head's gradient (the tied embedding's, when trained) is added to.
LossSum lm_loss(ModelParams& p, const Tensor& hidden, const std::vector<int>& ids, int64_t first,
                float grad_scale, Tensor* dhidden);

}  // namespace pg::train
