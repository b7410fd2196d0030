// SigLIP vision encoder (So400m/14 in PaliGemma): patch embedding + position
// embedding, pre-LN transformer blocks, final post_layernorm; no pooling head.
#pragma once

#include "io/config.h"
#include "model/weights.h"
#include "tensor/tensor.h"

namespace pg::model {

// pixel_values: [C, S, S] in [-1, 1]  ->  [N = (S/P)^2, W]
Tensor siglip_encode(const SiglipWeights& w, const io::VisionConfig& cfg,
                     const Tensor& pixel_values);

}  // namespace pg::model
