#include "model/siglip.h"

#include <cmath>
#include <string>

#include "kernels/kernels.h"
#include "model/trace.h"

namespace pg::model {
namespace {

// Conv2d with kernel = stride = P as a matrix product: each patch flattened in the
// kernel's [C, P, P] order.
// pixel_values: [C, S, S] -> patches: [N, C*P*P]
Tensor extract_patches(const Tensor& pixel_values, const io::VisionConfig& cfg) {
  const int64_t C = cfg.num_channels, S = cfg.image_size, P = cfg.patch_size, G = cfg.grid();
  Tensor patches({G * G, C * P * P});
  for (int64_t gy = 0; gy < G; ++gy) {
    for (int64_t gx = 0; gx < G; ++gx) {
      float* out = patches.row(gy * G + gx);
      for (int64_t c = 0; c < C; ++c) {
        for (int64_t ky = 0; ky < P; ++ky) {
          const float* src = pixel_values.data() + (c * S + gy * P + ky) * S + gx * P;
          for (int64_t kx = 0; kx < P; ++kx) *out++ = src[kx];
        }
      }
    }
  }
  return patches;
}

// The encoder's intermediate buffers, allocated (and zero-filled) once for all its layers.
struct LayerBuffers {
  LayerBuffers(const io::VisionConfig& cfg, int64_t N)
      : h({N, cfg.hidden_size}),
        q({N, cfg.hidden_size}),
        kk({N, cfg.hidden_size}),
        v({N, cfg.hidden_size}),
        attn({N, cfg.hidden_size}),
        mid({N, cfg.intermediate_size}) {}
  Tensor h, q, kk, v, attn;  // [N, W]
  Tensor mid;                // [N, I]
};

// x += Attn(LN1(x)); x += MLP(LN2(x)).   x: [N, W]
void encoder_layer(const SiglipLayerWeights& l, const io::VisionConfig& cfg, LayerBuffers& b,
                   Tensor& x) {
  const kernels::KernelTable& k = kernels::kernels();
  const int64_t N = x.dim(0), W = cfg.hidden_size, heads = cfg.num_attention_heads;
  const int64_t D = W / heads;

  Tensor &h = b.h, &q = b.q, &kk = b.kk, &v = b.v, &attn = b.attn, &mid = b.mid;
  k.layer_norm(x.data(), N, W, l.layer_norm1_weight.data(), l.layer_norm1_bias.data(),
               cfg.layer_norm_eps, h.data());
  // q, k, v: [N, W], the three products of one h.
  const kernels::MatmulOutput qkv[3] = {{l.q_proj, l.q_proj_bias.data(), q.data()},
                                        {l.k_proj, l.k_proj_bias.data(), kk.data()},
                                        {l.v_proj, l.v_proj_bias.data(), v.data()}};
  k.matmul_many(h.data(), N, qkv, 3);

  kernels::AttentionParams p;
  p.num_queries = N;
  p.num_keys = N;
  p.num_heads = heads;
  p.num_kv_heads = heads;
  p.head_dim = D;
  p.q_stride = p.kv_stride = p.out_stride = W;
  p.causal = false;  // every patch sees every patch
  p.scale = 1.0f / std::sqrt(static_cast<float>(D));
  p.low_precision = l.q_proj.low_precision;  // bf16 products in the low-precision modes
  k.attention(p, q.data(), kk.data(), v.data(), attn.data());
  k.matmul(attn.data(), N, l.out_proj, l.out_proj_bias.data(), h.data());
  k.add(x.data(), h.data(), N * W);

  k.layer_norm(x.data(), N, W, l.layer_norm2_weight.data(), l.layer_norm2_bias.data(),
               cfg.layer_norm_eps, h.data());
  const int64_t I = cfg.intermediate_size;
  k.matmul(h.data(), N, l.fc1, l.fc1_bias.data(), mid.data());
  k.gelu_tanh(mid.data(), mid.data(), N * I);
  k.matmul(mid.data(), N, l.fc2, l.fc2_bias.data(), h.data());
  k.add(x.data(), h.data(), N * W);
}

}  // namespace

Tensor siglip_encode(const SiglipWeights& w, const io::VisionConfig& cfg,
                     const Tensor& pixel_values) {
  const kernels::KernelTable& k = kernels::kernels();
  const int64_t N = cfg.num_patches(), W = cfg.hidden_size;

  // x: [N, W] = patches W_patch^T + b + position_embedding
  Tensor patches = extract_patches(pixel_values, cfg);
  Tensor x({N, W});
  k.matmul(patches.data(), N, w.patch_embedding, w.patch_embedding_bias.data(), x.data());
  k.add(x.data(), w.position_embedding.data(), N * W);
  trace("siglip.embeddings", x);

  LayerBuffers buffers(cfg, N);
  for (size_t i = 0; i < w.layers.size(); ++i) {
    encoder_layer(w.layers[i], cfg, buffers, x);
    trace("siglip.layers." + std::to_string(i), x);
  }
  Tensor out({N, W});
  k.layer_norm(x.data(), N, W, w.post_layernorm_weight.data(), w.post_layernorm_bias.data(),
               cfg.layer_norm_eps, out.data());
  trace("siglip.post_layernorm", out);
  return out;
}

}  // namespace pg::model
