// Gemma / Gemma 2 for training: the input embeddings and the decoder of model/gemma.cc
// over one whole sequence (no KV cache) with saved activations, and the backward pass.
// The prefix-LM mask: keys j < prefix_len are seen by every query, later keys causally;
// Gemma 2's sliding window and attention soft-capping as in the forward.
#pragma once

#include <vector>

#include "train/params.h"

namespace pg::train {

struct GemmaLayerTape {
  Tensor x;              // [T, H] layer input
  Tensor h1;             // [T, H] input_layernorm(x)
  Tensor q, k, v;        // [T, Hq*D], [T, Hkv*D] x2 (q and k after RoPE)
  Tensor probs;          // [Hq, T, T]
  Tensor attn;           // [T, Hq*D] attention output (input of o_proj)
  Tensor o;              // [T, H] o_proj output (before Gemma 2's post-attention norm)
  Tensor x_mid;          // [T, H] after the attention residual
  Tensor h2;             // [T, H] the pre-MLP norm of x_mid
  Tensor gate, up, act;  // [T, F]
  Tensor mlp;            // [T, H] down_proj output (before Gemma 2's post-FF norm)
};

struct GemmaTape {
  bool recompute = false;  // keep only each layer's input; redo the layer in backward
  int64_t prefix_len = 0;
  std::vector<GemmaLayerTape> layers;
  Tensor last;  // [T, H] input of the final norm
};

// ids: [T] -> x: [T, H]: embed[id] for text, image_features rows (in order) for ids equal
// to image_token, every row times sqrt(H) (as model/gemma.cc's gemma_embed).
Tensor embed_forward(const ModelParams& p, const std::vector<int>& ids, int image_token,
                     const Tensor* image_features);

// dx: [T, H] -> embedding rows' gradient += (when trained); the first image_rows ids equal
// to image_token were image feature rows: dfeatures [image_rows, H] (when non-null) gets
// their gradient.
void embed_backward(ModelParams& p, const std::vector<int>& ids, int image_token,
                    int64_t image_rows, const Tensor& dx, Tensor* dfeatures);

// x: [T, H] -> final-normed hidden states [T, H]. tape == nullptr: inference only.
Tensor gemma_forward_train(const ModelParams& p, Tensor x, int64_t prefix_len, GemmaTape* tape);

// dh: [T, H] (gradient of the final-normed hidden states) -> the trained decoder
// parameters' gradients +=; returns dx: [T, H] of the input embeddings when need_dx.
Tensor gemma_backward_train(ModelParams& p, GemmaTape& tape, const Tensor& dh, bool need_dx);

}  // namespace pg::train
