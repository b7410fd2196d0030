// SigLIP for training: the forward of model/siglip.cc with saved activations, and its
// backward pass into the trained SigLIP parameters.
#pragma once

#include <vector>

#include "train/params.h"

namespace pg::train {

// What one encoder layer's backward needs (all [N, W] unless noted).
struct SiglipLayerTape {
  Tensor x;            // layer input
  Tensor h1, q, k, v;  // LN1(x) and its projections
  Tensor probs;        // [heads, N, N]
  Tensor attn;         // attention output (input of out_proj)
  Tensor x_mid;        // x + attention block
  Tensor h2;           // LN2(x_mid)
  Tensor fc1;          // [N, I] before GELU
  Tensor act;          // [N, I] after GELU
};

struct SiglipTape {
  bool recompute = false;  // keep only each layer's input; redo the layer in backward
  Tensor patches;          // [N, C*P*P]
  std::vector<SiglipLayerTape> layers;
  Tensor last;  // input of post_layernorm [N, W]
};

// pixels: [C, S, S] -> [N, W] (post_layernorm output). tape == nullptr: inference only.
Tensor siglip_forward(const ModelParams& p, const Tensor& pixels, SiglipTape* tape);

// dout: [N, W] (gradient of the output) -> gradients of trained SigLIP parameters +=.
void siglip_backward(ModelParams& p, SiglipTape& tape, const Tensor& dout);

}  // namespace pg::train
