// Linear layers for training: y = x W^T (+ b) (+ LoRA), and their backward pass into
// the trained parameters' gradients.
#pragma once

#include <cstdint>

#include "train/params.h"

namespace pg::train {

// x: [m, in] -> y: [m, out].
void linear_forward(const Linear& l, const float* x, int64_t m, float* y);

// x: [m, in] (the forward's input), dy: [m, out]. Adds the gradients of the trained
// parts (weight, bias, LoRA factors) and, when dx is non-null, writes (accumulate:
// adds) dx: [m, in].
void linear_backward(const Linear& l, const float* x, const float* dy, int64_t m, float* dx,
                     bool accumulate);

// W + scale * B A as float32 [out, in]: the merged weight of a LoRA layer (W alone without one).
Tensor merged_weight(const Linear& l);

}  // namespace pg::train
