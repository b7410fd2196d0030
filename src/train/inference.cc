#include "train/inference.h"

#include <cstring>

#include "train/linear.h"

namespace pg::train {
namespace {

Tensor copy_of(const Param& p) {
  Tensor t(p.value.shape());
  std::memcpy(t.data(), p.data(), sizeof(float) * static_cast<size_t>(p.numel()));
  return t;
}

// The matrix the engine should read for a Linear: its view, or a merged LoRA copy kept in w.owned.
MatrixView matrix_of(const Linear& l, model::PaliGemmaWeights& w) {
  if (l.lora == nullptr) return l.weight->view;
  auto merged = std::make_shared<Tensor>(merged_weight(l));
  w.owned.push_back(merged);
  return MatrixView{DType::kF32, merged->data(), l.out(), l.in()};
}

}  // namespace

std::unique_ptr<model::PaliGemma> inference_model(const ModelParams& p) {
  model::PaliGemmaWeights w;
  const SiglipParams& v = p.vision;
  w.vision.patch_embedding = v.patch.weight->view;
  w.vision.patch_embedding_bias = copy_of(*v.patch.bias);
  w.vision.position_embedding = copy_of(*v.position_embedding);
  w.vision.layers.resize(v.layers.size());
  for (size_t i = 0; i < v.layers.size(); ++i) {
    const SiglipLayerParams& s = v.layers[i];
    model::SiglipLayerWeights& o = w.vision.layers[i];
    o.layer_norm1_weight = copy_of(*s.ln1_w);
    o.layer_norm1_bias = copy_of(*s.ln1_b);
    o.q_proj = matrix_of(s.q, w);
    o.k_proj = matrix_of(s.k, w);
    o.v_proj = matrix_of(s.v, w);
    o.out_proj = matrix_of(s.o, w);
    o.q_proj_bias = copy_of(*s.q.bias);
    o.k_proj_bias = copy_of(*s.k.bias);
    o.v_proj_bias = copy_of(*s.v.bias);
    o.out_proj_bias = copy_of(*s.o.bias);
    o.layer_norm2_weight = copy_of(*s.ln2_w);
    o.layer_norm2_bias = copy_of(*s.ln2_b);
    o.fc1 = matrix_of(s.fc1, w);
    o.fc1_bias = copy_of(*s.fc1.bias);
    o.fc2 = matrix_of(s.fc2, w);
    o.fc2_bias = copy_of(*s.fc2.bias);
  }
  w.vision.post_layernorm_weight = copy_of(*v.post_ln_w);
  w.vision.post_layernorm_bias = copy_of(*v.post_ln_b);
  w.projector.linear = matrix_of(p.projector, w);
  w.projector.linear_bias = copy_of(*p.projector.bias);

  const GemmaParams& g = p.text;
  const bool g2 = p.config().text.is_gemma2();
  w.text.embed_tokens = g.embed->view;
  w.text.layers.resize(g.layers.size());
  for (size_t i = 0; i < g.layers.size(); ++i) {
    const GemmaLayerParams& s = g.layers[i];
    model::GemmaLayerWeights& o = w.text.layers[i];
    o.input_layernorm = copy_of(*s.input_norm);
    o.q_proj = matrix_of(s.q, w);
    o.k_proj = matrix_of(s.k, w);
    o.v_proj = matrix_of(s.v, w);
    o.o_proj = matrix_of(s.o, w);
    if (g2) {
      o.post_attention_layernorm = copy_of(*s.post_attn_norm);
      o.pre_feedforward_layernorm = copy_of(*s.mlp_norm);
      o.post_feedforward_layernorm = copy_of(*s.post_ff_norm);
    } else {
      o.post_attention_layernorm = copy_of(*s.mlp_norm);
    }
    o.gate_proj = matrix_of(s.gate, w);
    o.up_proj = matrix_of(s.up, w);
    o.down_proj = matrix_of(s.down, w);
  }
  w.text.norm = copy_of(*g.norm);
  w.text.lm_head = g.lm_head->view;
  return model::PaliGemma::from_weights(p.config(), std::move(w));
}

}  // namespace pg::train
