#include "train/gemma_train.h"

#include <cmath>
#include <cstring>

#include "kernels/backward.h"
#include "kernels/kernels.h"
#include "train/linear.h"
#include "train/util.h"

namespace pg::train {
namespace {

// Gemma multiplies every input row by sqrt(H), rounded to float32.
float embed_normalizer(int64_t H) { return static_cast<float>(std::sqrt(static_cast<double>(H))); }

kernels::AttentionParams attention_params(const io::TextConfig& cfg, int64_t layer, int64_t T,
                                          int64_t prefix_len) {
  kernels::AttentionParams a;
  a.num_queries = a.num_keys = T;
  a.num_heads = cfg.num_attention_heads;
  a.num_kv_heads = cfg.num_key_value_heads;
  a.head_dim = cfg.head_dim;
  a.q_stride = a.out_stride = cfg.num_attention_heads * cfg.head_dim;
  a.kv_stride = cfg.num_key_value_heads * cfg.head_dim;
  a.query_offset = 0;
  a.prefix_len = prefix_len;
  a.causal = true;
  a.sliding_window = cfg.layer_is_sliding(layer) ? cfg.sliding_window : 0;
  a.scale = cfg.attention_scale();
  a.softcap = cfg.attn_logit_softcapping;
  return a;
}

// 1-indexed positions: row t has position t + 1.
std::vector<int64_t> positions(int64_t T) {
  std::vector<int64_t> pos(static_cast<size_t>(T));
  for (int64_t t = 0; t < T; ++t) pos[static_cast<size_t>(t)] = t + 1;
  return pos;
}

// One decoder layer over x: [T, H], in place. Fills s (when keep) for backward.
void layer_forward(const GemmaLayerParams& l, const io::TextConfig& cfg, int64_t layer,
                   int64_t prefix_len, Tensor& x, GemmaLayerTape& s, bool keep) {
  const kernels::KernelTable& k = kernels::kernels();
  const int64_t T = x.dim(0), H = cfg.hidden_size, F = cfg.intermediate_size;
  const int64_t QW = cfg.num_attention_heads * cfg.head_dim,
                KW = cfg.num_key_value_heads * cfg.head_dim;
  const float eps = cfg.rms_norm_eps;
  const bool g2 = cfg.is_gemma2();
  if (keep) s.x = clone(x);
  s.h1 = Tensor({T, H});
  k.rms_norm(x.data(), T, H, l.input_norm->data(), eps, s.h1.data());
  s.q = Tensor({T, QW});
  s.k = Tensor({T, KW});
  s.v = Tensor({T, KW});
  linear_forward(l.q, s.h1.data(), T, s.q.data());
  linear_forward(l.k, s.h1.data(), T, s.k.data());
  linear_forward(l.v, s.h1.data(), T, s.v.data());
  const std::vector<int64_t> pos = positions(T);
  k.rope(s.q.data(), T, QW, cfg.num_attention_heads, cfg.head_dim, pos.data(), cfg.rope_theta);
  k.rope(s.k.data(), T, KW, cfg.num_key_value_heads, cfg.head_dim, pos.data(), cfg.rope_theta);
  const kernels::AttentionParams a = attention_params(cfg, layer, T, prefix_len);
  // Always the probability-keeping attention, so that a recomputed layer (and a forward
  // without backward) reproduces the saved forward bit for bit.
  s.attn = Tensor({T, QW});
  s.probs = Tensor({a.num_heads, T, T});
  kernels::attention_forward(a, s.q.data(), s.k.data(), s.v.data(), s.attn.data(), s.probs.data());
  s.o = Tensor({T, H});
  linear_forward(l.o, s.attn.data(), T, s.o.data());
  if (g2) {
    Tensor on({T, H});
    k.rms_norm(s.o.data(), T, H, l.post_attn_norm->data(), eps, on.data());
    k.add(x.data(), on.data(), T * H);
  } else {
    k.add(x.data(), s.o.data(), T * H);
  }
  if (keep) s.x_mid = clone(x);

  s.h2 = Tensor({T, H});
  k.rms_norm(x.data(), T, H, l.mlp_norm->data(), eps, s.h2.data());
  s.gate = Tensor({T, F});
  s.up = Tensor({T, F});
  linear_forward(l.gate, s.h2.data(), T, s.gate.data());
  linear_forward(l.up, s.h2.data(), T, s.up.data());
  s.act = Tensor({T, F});
  k.gelu_tanh_mul(s.gate.data(), s.up.data(), s.act.data(), T * F);
  s.mlp = Tensor({T, H});
  linear_forward(l.down, s.act.data(), T, s.mlp.data());
  if (g2) {
    Tensor mn({T, H});
    k.rms_norm(s.mlp.data(), T, H, l.post_ff_norm->data(), eps, mn.data());
    k.add(x.data(), mn.data(), T * H);
  } else {
    k.add(x.data(), s.mlp.data(), T * H);
  }
}

float* grad_of(Param* p) { return p != nullptr && p->trainable ? p->grad.data() : nullptr; }

// dx: [T, H], the gradient of the layer output on entry, of its input on return (when
// need_dx; otherwise only the layer's parameter gradients are produced).
void layer_backward(const GemmaLayerParams& l, const io::TextConfig& cfg, int64_t layer,
                    int64_t prefix_len, const GemmaLayerTape& s, Tensor& dx, bool need_dx) {
  const int64_t T = dx.dim(0), H = cfg.hidden_size, F = cfg.intermediate_size;
  const int64_t QW = cfg.num_attention_heads * cfg.head_dim,
                KW = cfg.num_key_value_heads * cfg.head_dim;
  const float eps = cfg.rms_norm_eps;
  const bool g2 = cfg.is_gemma2();

  // MLP block: x_out = x_mid + [post_ff_norm](down(gelu(gate(h2)) * up(h2))), h2 = mlp_norm(x_mid).
  Tensor dm;
  const Tensor* dmlp = &dx;
  if (g2) {
    dm = Tensor({T, H});
    kernels::rms_norm_backward(s.mlp.data(), dx.data(), T, H, l.post_ff_norm->data(), eps,
                               dm.data(), grad_of(l.post_ff_norm), false);
    dmlp = &dm;
  }
  Tensor dact({T, F});
  linear_backward(l.down, s.act.data(), dmlp->data(), T, dact.data(), false);
  Tensor dgate({T, F}), dup({T, F});
  kernels::gelu_tanh_mul_backward(s.gate.data(), s.up.data(), dact.data(), dgate.data(), dup.data(),
                                  T * F);
  dact = Tensor();
  Tensor dh({T, H});
  linear_backward(l.gate, s.h2.data(), dgate.data(), T, dh.data(), false);
  linear_backward(l.up, s.h2.data(), dup.data(), T, dh.data(), true);
  kernels::rms_norm_backward(s.x_mid.data(), dh.data(), T, H, l.mlp_norm->data(), eps, dx.data(),
                             grad_of(l.mlp_norm), true);

  // Attention block: x_mid = x + [post_attn_norm](o_proj(attn(h1))), h1 = input_norm(x).
  const Tensor* dout = &dx;
  if (g2) {
    dm = Tensor({T, H});
    kernels::rms_norm_backward(s.o.data(), dx.data(), T, H, l.post_attn_norm->data(), eps,
                               dm.data(), grad_of(l.post_attn_norm), false);
    dout = &dm;
  }
  Tensor dattn({T, QW});
  linear_backward(l.o, s.attn.data(), dout->data(), T, dattn.data(), false);
  const kernels::AttentionParams a = attention_params(cfg, layer, T, prefix_len);
  Tensor dq({T, QW}), dk({T, KW}), dv({T, KW});
  kernels::attention_backward(a, s.q.data(), s.k.data(), s.v.data(), s.probs.data(), dattn.data(),
                              dq.data(), dk.data(), dv.data());
  const std::vector<int64_t> pos = positions(T);
  kernels::rope_backward(dq.data(), T, QW, cfg.num_attention_heads, cfg.head_dim, pos.data(),
                         cfg.rope_theta);
  kernels::rope_backward(dk.data(), T, KW, cfg.num_key_value_heads, cfg.head_dim, pos.data(),
                         cfg.rope_theta);
  const bool need_dh1 = need_dx || l.input_norm->trainable;
  float* dh1 = need_dh1 ? dh.data() : nullptr;
  linear_backward(l.q, s.h1.data(), dq.data(), T, dh1, false);
  linear_backward(l.k, s.h1.data(), dk.data(), T, dh1, true);
  linear_backward(l.v, s.h1.data(), dv.data(), T, dh1, true);
  if (!need_dh1) return;
  kernels::rms_norm_backward(s.x.data(), dh.data(), T, H, l.input_norm->data(), eps, dx.data(),
                             grad_of(l.input_norm), true);
}

}  // namespace

// ids: [T] -> [T, H].
Tensor embed_forward(const ModelParams& p, const std::vector<int>& ids, int image_token,
                     const Tensor* image_features) {
  const int64_t T = static_cast<int64_t>(ids.size()), H = p.config().text.hidden_size;
  const MatrixView& e = p.text.embed->view;
  const size_t row_bytes = static_cast<size_t>(H) * dtype_size(e.dtype);
  Tensor x({T, H});
  int64_t next_image_row = 0;
  for (int64_t t = 0; t < T; ++t) {
    const int id = ids[static_cast<size_t>(t)];
    if (image_features != nullptr && id == image_token && next_image_row < image_features->dim(0)) {
      std::memcpy(x.row(t), image_features->row(next_image_row++),
                  sizeof(float) * static_cast<size_t>(H));
    } else {
      convert_to_f32(e.dtype,
                     static_cast<const uint8_t*>(e.data) + static_cast<size_t>(id) * row_bytes,
                     x.row(t), H);
    }
  }
  kernels::kernels().scale(x.data(), T * H, embed_normalizer(H));
  return x;
}

// dx: [T, H] -> embed.grad rows +=, dfeatures: [n, H].
void embed_backward(ModelParams& p, const std::vector<int>& ids, int image_token,
                    int64_t image_rows, const Tensor& dx, Tensor* dfeatures) {
  const int64_t T = static_cast<int64_t>(ids.size()), H = p.config().text.hidden_size;
  const float norm = embed_normalizer(H);
  Param& e = *p.text.embed;
  int64_t next_image_row = 0;
  for (int64_t t = 0; t < T; ++t) {
    const int id = ids[static_cast<size_t>(t)];
    const float* g = dx.row(t);
    if (id == image_token && next_image_row < image_rows) {
      if (dfeatures != nullptr) {
        float* out = dfeatures->row(next_image_row);
        for (int64_t i = 0; i < H; ++i) out[i] = g[i] * norm;
      }
      ++next_image_row;
    } else if (e.trainable) {
      float* out = e.grad.data() + static_cast<int64_t>(id) * H;
      for (int64_t i = 0; i < H; ++i) out[i] += g[i] * norm;
    }
  }
}

Tensor gemma_forward_train(const ModelParams& p, Tensor x, int64_t prefix_len, GemmaTape* tape) {
  const io::TextConfig& cfg = p.config().text;
  const int64_t T = x.dim(0), H = cfg.hidden_size;
  if (tape != nullptr) {
    tape->prefix_len = prefix_len;
    tape->layers.clear();
    tape->layers.resize(p.text.layers.size());
  }
  for (size_t i = 0; i < p.text.layers.size(); ++i) {
    const bool keep = tape != nullptr && !tape->recompute;
    GemmaLayerTape scratch;
    GemmaLayerTape& s = keep ? tape->layers[i] : scratch;
    if (tape != nullptr && tape->recompute) tape->layers[i].x = clone(x);
    layer_forward(p.text.layers[i], cfg, static_cast<int64_t>(i), prefix_len, x, s, keep);
  }
  Tensor out({T, H});
  kernels::kernels().rms_norm(x.data(), T, H, p.text.norm->data(), cfg.rms_norm_eps, out.data());
  if (tape != nullptr) tape->last = std::move(x);
  return out;
}

Tensor gemma_backward_train(ModelParams& p, GemmaTape& tape, const Tensor& dh, bool need_dx) {
  const io::TextConfig& cfg = p.config().text;
  const int64_t T = dh.dim(0), H = cfg.hidden_size;
  Tensor dx({T, H});
  kernels::rms_norm_backward(tape.last.data(), dh.data(), T, H, p.text.norm->data(),
                             cfg.rms_norm_eps, dx.data(), grad_of(p.text.norm), false);
  for (size_t i = p.text.layers.size(); i-- > 0;) {
    GemmaLayerTape& s = tape.layers[i];
    if (tape.recompute) {  // redo the layer from its saved input, keeping everything
      Tensor x = clone(s.x);
      layer_forward(p.text.layers[i], cfg, static_cast<int64_t>(i), tape.prefix_len, x, s, true);
    }
    layer_backward(p.text.layers[i], cfg, static_cast<int64_t>(i), tape.prefix_len, s, dx,
                   i > 0 || need_dx);
    s = GemmaLayerTape();  // free as we go
  }
  if (!need_dx) return Tensor();
  return dx;
}

}  // namespace pg::train
