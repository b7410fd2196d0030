#include "model/weights.h"

#include <cstdint>
#include <cstring>
#include <map>

namespace pg::model {
namespace {

// One row of the name table: a checkpoint name, the shape the config implies, and the
// field it fills.
struct Slot {
  std::string name;
  Shape shape;
  MatrixView* matrix = nullptr;  // kept in the stored dtype
  Tensor* vector = nullptr;      // copied to float32
  bool optional = false;
};

std::string str(int64_t i) { return std::to_string(i); }

std::vector<Slot> name_table(const io::PaliGemmaConfig& c, PaliGemmaWeights& w) {
  std::vector<Slot> t;
  auto mat = [&t](std::string name, Shape shape, MatrixView* m) {
    t.push_back({std::move(name), std::move(shape), m, nullptr, false});
  };
  auto vec = [&t](std::string name, Shape shape, Tensor* v) {
    t.push_back({std::move(name), std::move(shape), nullptr, v, false});
  };

  // SigLIP.
  const io::VisionConfig& v = c.vision;
  const int64_t W = v.hidden_size, I = v.intermediate_size;
  const std::string vp = "vision_tower.vision_model.";
  SiglipWeights& sw = w.vision;
  mat(vp + "embeddings.patch_embedding.weight", {W, v.num_channels, v.patch_size, v.patch_size},
      &sw.patch_embedding);
  vec(vp + "embeddings.patch_embedding.bias", {W}, &sw.patch_embedding_bias);
  vec(vp + "embeddings.position_embedding.weight", {v.num_patches(), W}, &sw.position_embedding);
  sw.layers.resize(static_cast<size_t>(v.num_hidden_layers));
  for (int64_t i = 0; i < v.num_hidden_layers; ++i) {
    SiglipLayerWeights& l = sw.layers[static_cast<size_t>(i)];
    const std::string p = vp + "encoder.layers." + str(i) + ".";
    vec(p + "layer_norm1.weight", {W}, &l.layer_norm1_weight);
    vec(p + "layer_norm1.bias", {W}, &l.layer_norm1_bias);
    mat(p + "self_attn.q_proj.weight", {W, W}, &l.q_proj);
    vec(p + "self_attn.q_proj.bias", {W}, &l.q_proj_bias);
    mat(p + "self_attn.k_proj.weight", {W, W}, &l.k_proj);
    vec(p + "self_attn.k_proj.bias", {W}, &l.k_proj_bias);
    mat(p + "self_attn.v_proj.weight", {W, W}, &l.v_proj);
    vec(p + "self_attn.v_proj.bias", {W}, &l.v_proj_bias);
    mat(p + "self_attn.out_proj.weight", {W, W}, &l.out_proj);
    vec(p + "self_attn.out_proj.bias", {W}, &l.out_proj_bias);
    vec(p + "layer_norm2.weight", {W}, &l.layer_norm2_weight);
    vec(p + "layer_norm2.bias", {W}, &l.layer_norm2_bias);
    mat(p + "mlp.fc1.weight", {I, W}, &l.fc1);
    vec(p + "mlp.fc1.bias", {I}, &l.fc1_bias);
    mat(p + "mlp.fc2.weight", {W, I}, &l.fc2);
    vec(p + "mlp.fc2.bias", {W}, &l.fc2_bias);
  }
  vec(vp + "post_layernorm.weight", {W}, &sw.post_layernorm_weight);
  vec(vp + "post_layernorm.bias", {W}, &sw.post_layernorm_bias);

  // Projector.
  mat("multi_modal_projector.linear.weight", {c.projection_dim, W}, &w.projector.linear);
  vec("multi_modal_projector.linear.bias", {c.projection_dim}, &w.projector.linear_bias);

  // Gemma / Gemma 2.
  const io::TextConfig& x = c.text;
  const int64_t H = x.hidden_size, D = x.head_dim, F = x.intermediate_size;
  const int64_t Hq = x.num_attention_heads, Hkv = x.num_key_value_heads;
  const std::string tp = "language_model.model.";
  GemmaWeights& g = w.text;
  mat(tp + "embed_tokens.weight", {x.vocab_size, H}, &g.embed_tokens);
  g.layers.resize(static_cast<size_t>(x.num_hidden_layers));
  for (int64_t i = 0; i < x.num_hidden_layers; ++i) {
    GemmaLayerWeights& l = g.layers[static_cast<size_t>(i)];
    const std::string p = tp + "layers." + str(i) + ".";
    vec(p + "input_layernorm.weight", {H}, &l.input_layernorm);
    mat(p + "self_attn.q_proj.weight", {Hq * D, H}, &l.q_proj);
    mat(p + "self_attn.k_proj.weight", {Hkv * D, H}, &l.k_proj);
    mat(p + "self_attn.v_proj.weight", {Hkv * D, H}, &l.v_proj);
    mat(p + "self_attn.o_proj.weight", {H, Hq * D}, &l.o_proj);
    vec(p + "post_attention_layernorm.weight", {H}, &l.post_attention_layernorm);
    if (x.is_gemma2()) {
      vec(p + "pre_feedforward_layernorm.weight", {H}, &l.pre_feedforward_layernorm);
      vec(p + "post_feedforward_layernorm.weight", {H}, &l.post_feedforward_layernorm);
    }
    mat(p + "mlp.gate_proj.weight", {F, H}, &l.gate_proj);
    mat(p + "mlp.up_proj.weight", {F, H}, &l.up_proj);
    mat(p + "mlp.down_proj.weight", {H, F}, &l.down_proj);
  }
  vec(tp + "norm.weight", {H}, &g.norm);
  t.push_back({"language_model.lm_head.weight", {x.vocab_size, H}, &g.lm_head, nullptr, true});
  return t;
}

bool starts_with(const std::string& s, const char* prefix) {
  return s.rfind(prefix, 0) == 0;
}

}  // namespace

std::string canonical_name(const std::string& key) {
  if (starts_with(key, "model.language_model.")) {
    return "language_model.model." + key.substr(std::strlen("model.language_model."));
  }
  if (starts_with(key, "model.vision_tower.")) return key.substr(std::strlen("model."));
  if (starts_with(key, "model.multi_modal_projector.")) return key.substr(std::strlen("model."));
  if (key == "lm_head.weight") return "language_model.lm_head.weight";
  return key;
}

Result<PaliGemmaWeights> load_weights(const io::PaliGemmaConfig& config,
                                      std::shared_ptr<io::TensorStore> store,
                                      std::vector<std::string>* warnings) {
  // Canonical name -> (stored name, view).
  std::map<std::string, std::pair<std::string, const TensorView*>> by_name;
  for (const auto& [name, view] : store->tensors()) {
    const std::string canon = canonical_name(name);
    auto [it, inserted] = by_name.emplace(canon, std::make_pair(name, &view));
    if (!inserted) {
      return invalid_argument("tensors '" + it->second.first + "' and '" + name +
                              "' are the same weight under two naming schemes");
    }
  }

  PaliGemmaWeights w;
  w.store = store;
  std::vector<Slot> table = name_table(config, w);
  std::map<std::string, bool> used;
  for (Slot& slot : table) {
    auto it = by_name.find(slot.name);
    if (it == by_name.end()) {
      if (slot.optional) continue;
      return not_found("missing tensor '" + slot.name + "' (expected shape " +
                       shape_to_string(slot.shape) + ")");
    }
    const std::string& stored = it->second.first;
    const TensorView& view = *it->second.second;
    used[slot.name] = true;
    const std::string where = "tensor '" + stored + "' in " + store->file_of(stored);
    if (view.shape != slot.shape) {
      return invalid_argument(where + ": expected shape " + shape_to_string(slot.shape) +
                              ", found " + shape_to_string(view.shape));
    }
    if (view.dtype != DType::kF32 && view.dtype != DType::kBF16 && view.dtype != DType::kF16) {
      return invalid_argument(where + ": dtype " + dtype_name(view.dtype) +
                              " is not a float type (expected F32, BF16 or F16)");
    }
    if (slot.vector != nullptr) {
      *slot.vector = Tensor::from_view(view);
      continue;
    }
    // Matrices stay mapped; a misaligned one (odd data offset) is copied once.
    const void* data = view.data;
    if (reinterpret_cast<uintptr_t>(data) % dtype_size(view.dtype) != 0) {
      std::shared_ptr<uint8_t[]> copy(new uint8_t[view.nbytes()]);
      std::memcpy(copy.get(), data, view.nbytes());
      data = copy.get();
      w.owned.push_back(copy);
    }
    slot.matrix->dtype = view.dtype;
    slot.matrix->data = data;
    slot.matrix->rows = slot.shape[0];
    slot.matrix->cols = view.numel() / slot.shape[0];
  }
  if (w.text.lm_head.data == nullptr) w.text.lm_head = w.text.embed_tokens;  // tied

  if (warnings != nullptr) {
    for (const auto& [canon, entry] : by_name) {
      if (!used.count(canon)) {
        warnings->push_back("unexpected tensor '" + entry.first + "' in " +
                            store->file_of(entry.first) + " is ignored");
      }
    }
  }
  return w;
}

}  // namespace pg::model
