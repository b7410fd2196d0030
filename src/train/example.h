// One training example through the whole model: SigLIP -> projector -> Gemma -> loss,
// and back. Examples of a batch run one after another at their own lengths, so padding
// never exists: summing their gradients equals a padded batch with padding masked out of
// attention and loss.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "train/lm_loss.h"
#include "train/params.h"

namespace pg::train {

struct Example {
  std::vector<Tensor> pixels;  // [C, S, S] per image
  std::vector<int> ids;        // image tokens, BOS, encode(prefix + "\n"), encode(suffix), EOS
  int64_t prefix_len = 0;      // image tokens + BOS + prefix + "\n"
  std::string suffix;          // the answer (eval exact match)
  int64_t loss_tokens() const { return static_cast<int64_t>(ids.size()) - prefix_len; }
};

struct ForwardOptions {
  bool recompute = false;  // activation recomputation: keep only layer inputs
};

// Forward and backward: returns the summed NLL of the example's suffix and EOS, and adds
// d(grad_scale * nll)/d theta to every trained parameter's gradient.
LossSum example_backward(ModelParams& p, const Example& ex, float grad_scale,
                         const ForwardOptions& o);

// Forward only.
LossSum example_loss(const ModelParams& p, const Example& ex);

// Greedy answer to the prompt ids[0, prefix_len): generated ids (a final EOS included),
// never an id >= vocab_limit. Recomputes the whole sequence each step (no KV cache).
std::vector<int> greedy_answer(const ModelParams& p, const Example& ex, int64_t max_tokens,
                               int eos_id, int vocab_limit);

}  // namespace pg::train
