// PaliGemma's multi-modal projector: one Linear from the vision width to the text width.
#pragma once

#include "model/weights.h"
#include "tensor/tensor.h"

namespace pg::model {

// x: [N, W] -> [N, H]
Tensor project(const ProjectorWeights& w, const Tensor& x);

}  // namespace pg::model
