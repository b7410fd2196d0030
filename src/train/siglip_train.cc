#include "train/siglip_train.h"

#include <cmath>

#include "kernels/backward.h"
#include "kernels/kernels.h"
#include "train/linear.h"
#include "train/util.h"

namespace pg::train {
namespace {

// Conv2d with kernel = stride = P as rows of flattened [C, P, P] patches.
// pixels: [C, S, S] -> [N, C*P*P]
Tensor extract_patches(const Tensor& pixels, const io::VisionConfig& cfg) {
  const int64_t C = cfg.num_channels, S = cfg.image_size, P = cfg.patch_size, G = cfg.grid();
  Tensor patches({G * G, C * P * P});
  for (int64_t gy = 0; gy < G; ++gy) {
    for (int64_t gx = 0; gx < G; ++gx) {
      float* out = patches.row(gy * G + gx);
      for (int64_t c = 0; c < C; ++c) {
        for (int64_t ky = 0; ky < P; ++ky) {
          const float* src = pixels.data() + (c * S + gy * P + ky) * S + gx * P;
          for (int64_t kx = 0; kx < P; ++kx) *out++ = src[kx];
        }
      }
    }
  }
  return patches;
}

kernels::AttentionParams attention_params(const io::VisionConfig& cfg, int64_t N) {
  kernels::AttentionParams a;
  a.num_queries = a.num_keys = N;
  a.num_heads = a.num_kv_heads = cfg.num_attention_heads;
  a.head_dim = cfg.hidden_size / cfg.num_attention_heads;
  a.q_stride = a.kv_stride = a.out_stride = cfg.hidden_size;
  a.causal = false;
  a.scale = 1.0f / std::sqrt(static_cast<float>(a.head_dim));
  return a;
}

// x += Attn(LN1(x)); x += MLP(LN2(x)).  x: [N, W]. Fills t (when non-null) for backward.
void layer_forward(const SiglipLayerParams& l, const io::VisionConfig& cfg, Tensor& x,
                   SiglipLayerTape* t) {
  const kernels::KernelTable& k = kernels::kernels();
  const int64_t N = x.dim(0), W = cfg.hidden_size, I = cfg.intermediate_size;
  const float eps = cfg.layer_norm_eps;
  SiglipLayerTape local;
  SiglipLayerTape& s = t != nullptr ? *t : local;
  if (t != nullptr) s.x = clone(x);
  s.h1 = Tensor({N, W});
  k.layer_norm(x.data(), N, W, l.ln1_w->data(), l.ln1_b->data(), eps, s.h1.data());
  s.q = Tensor({N, W});
  s.k = Tensor({N, W});
  s.v = Tensor({N, W});
  linear_forward(l.q, s.h1.data(), N, s.q.data());
  linear_forward(l.k, s.h1.data(), N, s.k.data());
  linear_forward(l.v, s.h1.data(), N, s.v.data());
  const kernels::AttentionParams a = attention_params(cfg, N);
  // Always the probability-keeping attention, so that a recomputed layer (and a forward
  // without backward) reproduces the saved forward bit for bit.
  s.attn = Tensor({N, W});
  s.probs = Tensor({a.num_heads, N, N});
  kernels::attention_forward(a, s.q.data(), s.k.data(), s.v.data(), s.attn.data(), s.probs.data());
  Tensor h({N, W});
  linear_forward(l.o, s.attn.data(), N, h.data());
  k.add(x.data(), h.data(), N * W);
  if (t != nullptr) s.x_mid = clone(x);

  s.h2 = Tensor({N, W});
  k.layer_norm(x.data(), N, W, l.ln2_w->data(), l.ln2_b->data(), eps, s.h2.data());
  s.fc1 = Tensor({N, I});
  linear_forward(l.fc1, s.h2.data(), N, s.fc1.data());
  s.act = Tensor({N, I});
  k.gelu_tanh(s.fc1.data(), s.act.data(), N * I);
  linear_forward(l.fc2, s.act.data(), N, h.data());
  k.add(x.data(), h.data(), N * W);
}

// dx: [N, W], the gradient of the layer output on entry, of its input on return.
void layer_backward(const SiglipLayerParams& l, const io::VisionConfig& cfg,
                    const SiglipLayerTape& s, Tensor& dx, bool need_dx) {
  const int64_t N = dx.dim(0), W = cfg.hidden_size, I = cfg.intermediate_size;
  const float eps = cfg.layer_norm_eps;
  // MLP block: x_out = x_mid + fc2(gelu(fc1(LN2(x_mid)))).
  Tensor dact({N, I});
  linear_backward(l.fc2, s.act.data(), dx.data(), N, dact.data(), false);
  kernels::gelu_tanh_backward(s.fc1.data(), dact.data(), dact.data(), N * I);
  Tensor dh({N, W});
  linear_backward(l.fc1, s.h2.data(), dact.data(), N, dh.data(), false);
  kernels::layer_norm_backward(s.x_mid.data(), dh.data(), N, W, l.ln2_w->data(), eps, dx.data(),
                               l.ln2_w->trainable ? l.ln2_w->grad.data() : nullptr,
                               l.ln2_b->trainable ? l.ln2_b->grad.data() : nullptr, true);
  // Attention block: x_mid = x + out_proj(attn(LN1(x))).
  Tensor dattn({N, W});
  linear_backward(l.o, s.attn.data(), dx.data(), N, dattn.data(), false);
  const kernels::AttentionParams a = attention_params(cfg, N);
  Tensor dq({N, W}), dk({N, W}), dv({N, W});
  kernels::attention_backward(a, s.q.data(), s.k.data(), s.v.data(), s.probs.data(), dattn.data(),
                              dq.data(), dk.data(), dv.data());
  const bool need_dh1 = need_dx || l.ln1_w->trainable || l.ln1_b->trainable;
  float* dh1 = need_dh1 ? dh.data() : nullptr;
  linear_backward(l.q, s.h1.data(), dq.data(), N, dh1, false);
  // The key bias adds q . b to every score of a query: softmax cancels it, so its gradient
  // is exactly zero (computing it would only sum rounding noise). It stays 0.
  Linear k_no_bias = l.k;
  k_no_bias.bias = nullptr;
  linear_backward(k_no_bias, s.h1.data(), dk.data(), N, dh1, true);
  linear_backward(l.v, s.h1.data(), dv.data(), N, dh1, true);
  if (!need_dh1) return;
  kernels::layer_norm_backward(s.x.data(), dh.data(), N, W, l.ln1_w->data(), eps, dx.data(),
                               l.ln1_w->trainable ? l.ln1_w->grad.data() : nullptr,
                               l.ln1_b->trainable ? l.ln1_b->grad.data() : nullptr, true);
}

}  // namespace

Tensor siglip_forward(const ModelParams& p, const Tensor& pixels, SiglipTape* tape) {
  const kernels::KernelTable& k = kernels::kernels();
  const io::VisionConfig& cfg = p.config().vision;
  const int64_t N = cfg.num_patches(), W = cfg.hidden_size;
  Tensor patches = extract_patches(pixels, cfg);
  Tensor x({N, W});
  linear_forward(p.vision.patch, patches.data(), N, x.data());
  k.add(x.data(), p.vision.position_embedding->data(), N * W);
  if (tape != nullptr) {
    tape->patches = std::move(patches);
    tape->layers.clear();
    tape->layers.resize(p.vision.layers.size());
  }
  for (size_t i = 0; i < p.vision.layers.size(); ++i) {
    if (tape == nullptr) {
      layer_forward(p.vision.layers[i], cfg, x, nullptr);
    } else if (tape->recompute) {
      tape->layers[i].x = clone(x);
      layer_forward(p.vision.layers[i], cfg, x, nullptr);
    } else {
      layer_forward(p.vision.layers[i], cfg, x, &tape->layers[i]);
    }
  }
  Tensor out({N, W});
  k.layer_norm(x.data(), N, W, p.vision.post_ln_w->data(), p.vision.post_ln_b->data(),
               cfg.layer_norm_eps, out.data());
  if (tape != nullptr) tape->last = std::move(x);
  return out;
}

void siglip_backward(ModelParams& p, SiglipTape& tape, const Tensor& dout) {
  const io::VisionConfig& cfg = p.config().vision;
  const int64_t N = cfg.num_patches(), W = cfg.hidden_size;
  SiglipParams& v = p.vision;
  Tensor dx({N, W});
  kernels::layer_norm_backward(tape.last.data(), dout.data(), N, W, v.post_ln_w->data(),
                               cfg.layer_norm_eps, dx.data(),
                               v.post_ln_w->trainable ? v.post_ln_w->grad.data() : nullptr,
                               v.post_ln_b->trainable ? v.post_ln_b->grad.data() : nullptr, false);
  const bool embeddings_train =
      v.patch.weight->trainable || v.patch.bias->trainable || v.position_embedding->trainable;
  for (size_t i = v.layers.size(); i-- > 0;) {
    SiglipLayerTape& t = tape.layers[i];
    if (tape.recompute) {  // redo the layer from its saved input, keeping everything
      Tensor x = clone(t.x);
      layer_forward(v.layers[i], cfg, x, &t);
    }
    layer_backward(v.layers[i], cfg, t, dx, i > 0 || embeddings_train);
    t = SiglipLayerTape();  // free as we go
  }
  if (!embeddings_train) return;
  if (v.position_embedding->trainable)
    add_into(v.position_embedding->grad.data(), dx.data(), N * W);
  linear_backward(v.patch, tape.patches.data(), dx.data(), N, nullptr, false);
}

}  // namespace pg::train
