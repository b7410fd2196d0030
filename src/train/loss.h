// The `loss` command's computation: the prefix-LM loss of one example and, optionally,
// the gradient of that (mean) loss with respect to every parameter of the checkpoint.
#pragma once

#include <string>
#include <vector>

#include "base/status.h"
#include "model/paligemma.h"
#include "text/tokenizer.h"

namespace pg::train {

struct NamedGradient {
  std::string name;  // the parameter's key in the checkpoint
  Tensor grad;       // float32, the parameter's shape
};

struct LossResult {
  double loss = 0.0;                     // mean cross-entropy over the predicted tokens
  int64_t tokens = 0;                    // suffix tokens + EOS
  std::vector<NamedGradient> gradients;  // every parameter, when asked for
};

// images: image files (their blocks come first, in order). The tied embedding's gradient
// includes the LM head's.
Result<LossResult> compute_loss(const model::PaliGemma& model, const text::Tokenizer& tok,
                                const std::vector<std::string>& images, const std::string& prefix,
                                const std::string& suffix, bool gradients);

// Writes grad.<name> float32 tensors to a safetensors file.
Status write_gradients(const std::string& path, const std::vector<NamedGradient>& grads);

}  // namespace pg::train
