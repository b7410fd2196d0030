#include "train/params.h"

#include <cmath>
#include <cstring>

#include "model/weights.h"
#include "train/rng.h"

namespace pg::train {
namespace {

std::string str(int64_t i) { return std::to_string(i); }

Tensor copy_tensor(const Tensor& t) {
  Tensor out(t.shape());
  if (t.numel() > 0)
    std::memcpy(out.data(), t.data(), sizeof(float) * static_cast<size_t>(t.numel()));
  return out;
}

// A whole matrix as float32 (every stored format, quantized ones included).
void matrix_to_f32(const MatrixView& v, float* out) {
  if (!v.quantized()) {
    convert_to_f32(v.dtype, v.data, out, v.rows * v.cols);
    return;
  }
  for (int64_t r = 0; r < v.rows; ++r) dequantize_row(v, r, out + r * v.cols);
}

// Gives p a float32 master (matrices) and a gradient.
void make_trainable(Param& p) {
  p.trainable = true;
  if (p.matrix && p.value.numel() == 0) {
    p.value = Tensor(p.shape);
    matrix_to_f32(p.view, p.value.data());
    p.view = MatrixView{DType::kF32, p.value.data(), p.view.rows, p.view.cols};
  }
  p.grad = Tensor(p.shape);
}

// Strips a trailing ".weight".
std::string module_of(const std::string& name) {
  const std::string suffix = ".weight";
  if (name.size() > suffix.size() &&
      name.compare(name.size() - suffix.size(), suffix.size(), suffix) == 0) {
    return name.substr(0, name.size() - suffix.size());
  }
  return name;
}

}  // namespace

Result<TrainMode> parse_train_mode(const std::string& name) {
  if (name == "full") return TrainMode::kFull;
  if (name == "attention") return TrainMode::kAttention;
  if (name == "lora") return TrainMode::kLora;
  return invalid_argument("unknown training mode '" + name +
                          "' (expected full, attention or lora)");
}

const char* train_mode_name(TrainMode mode) {
  switch (mode) {
    case TrainMode::kFull: return "full";
    case TrainMode::kAttention: return "attention";
    case TrainMode::kLora: return "lora";
  }
  return "?";
}

Param* ModelParams::add(const std::string& name, Shape shape, bool matrix) {
  auto p = std::make_unique<Param>();
  p->name = name;
  p->stored_name = name;
  p->shape = std::move(shape);
  p->matrix = matrix;
  p->decay = p->shape.size() >= 2;
  Param* raw = p.get();
  owned_.push_back(std::move(p));
  all_.push_back(raw);
  by_name_[name] = raw;
  return raw;
}

Result<std::unique_ptr<ModelParams>> ModelParams::create(const model::PaliGemma& model,
                                                         int64_t image_size) {
  std::unique_ptr<ModelParams> mp(new ModelParams());
  mp->config_ = model.config();
  const io::PaliGemmaConfig& c = mp->config_;
  const model::PaliGemmaWeights& w = model.weights();

  auto mat = [&](const std::string& name, const MatrixView& v, Shape shape) {
    Param* p = mp->add(name, std::move(shape), true);
    p->view = v;
    return p;
  };
  auto vec = [&](const std::string& name, const Tensor& t) {
    Param* p = mp->add(name, t.shape(), false);
    p->value = copy_tensor(t);
    return p;
  };

  // SigLIP.
  const io::VisionConfig& v = c.vision;
  const std::string vp = "vision_tower.vision_model.";
  SiglipParams& sv = mp->vision;
  sv.patch.weight = mat(vp + "embeddings.patch_embedding.weight", w.vision.patch_embedding,
                        {v.hidden_size, v.num_channels, v.patch_size, v.patch_size});
  sv.patch.bias = vec(vp + "embeddings.patch_embedding.bias", w.vision.patch_embedding_bias);
  sv.position_embedding =
      vec(vp + "embeddings.position_embedding.weight", w.vision.position_embedding);
  sv.layers.resize(w.vision.layers.size());
  for (size_t i = 0; i < w.vision.layers.size(); ++i) {
    const model::SiglipLayerWeights& l = w.vision.layers[i];
    SiglipLayerParams& o = sv.layers[i];
    const std::string p = vp + "encoder.layers." + str(static_cast<int64_t>(i)) + ".";
    auto lin = [&](const std::string& n, const MatrixView& m, const Tensor& b) {
      Linear out;
      out.weight = mat(p + n + ".weight", m, {m.rows, m.cols});
      out.bias = vec(p + n + ".bias", b);
      return out;
    };
    o.ln1_w = vec(p + "layer_norm1.weight", l.layer_norm1_weight);
    o.ln1_b = vec(p + "layer_norm1.bias", l.layer_norm1_bias);
    o.q = lin("self_attn.q_proj", l.q_proj, l.q_proj_bias);
    o.k = lin("self_attn.k_proj", l.k_proj, l.k_proj_bias);
    o.v = lin("self_attn.v_proj", l.v_proj, l.v_proj_bias);
    o.o = lin("self_attn.out_proj", l.out_proj, l.out_proj_bias);
    o.ln2_w = vec(p + "layer_norm2.weight", l.layer_norm2_weight);
    o.ln2_b = vec(p + "layer_norm2.bias", l.layer_norm2_bias);
    o.fc1 = lin("mlp.fc1", l.fc1, l.fc1_bias);
    o.fc2 = lin("mlp.fc2", l.fc2, l.fc2_bias);
  }
  sv.post_ln_w = vec(vp + "post_layernorm.weight", w.vision.post_layernorm_weight);
  sv.post_ln_b = vec(vp + "post_layernorm.bias", w.vision.post_layernorm_bias);

  // Projector.
  mp->projector.weight = mat("multi_modal_projector.linear.weight", w.projector.linear,
                             {w.projector.linear.rows, w.projector.linear.cols});
  mp->projector.bias = vec("multi_modal_projector.linear.bias", w.projector.linear_bias);

  // Gemma / Gemma 2.
  const bool g2 = c.text.is_gemma2();
  const std::string tp = "language_model.model.";
  GemmaParams& g = mp->text;
  const MatrixView& e = w.text.embed_tokens;
  g.embed = mat(tp + "embed_tokens.weight", e, {e.rows, e.cols});
  g.layers.resize(w.text.layers.size());
  for (size_t i = 0; i < w.text.layers.size(); ++i) {
    const model::GemmaLayerWeights& l = w.text.layers[i];
    GemmaLayerParams& o = g.layers[i];
    const std::string p = tp + "layers." + str(static_cast<int64_t>(i)) + ".";
    auto lin = [&](const std::string& n, const MatrixView& m) {
      Linear out;
      out.weight = mat(p + n + ".weight", m, {m.rows, m.cols});
      return out;
    };
    o.input_norm = vec(p + "input_layernorm.weight", l.input_layernorm);
    o.q = lin("self_attn.q_proj", l.q_proj);
    o.k = lin("self_attn.k_proj", l.k_proj);
    o.v = lin("self_attn.v_proj", l.v_proj);
    o.o = lin("self_attn.o_proj", l.o_proj);
    Param* post_attention = vec(p + "post_attention_layernorm.weight", l.post_attention_layernorm);
    if (g2) {
      o.post_attn_norm = post_attention;
      o.mlp_norm = vec(p + "pre_feedforward_layernorm.weight", l.pre_feedforward_layernorm);
      o.post_ff_norm = vec(p + "post_feedforward_layernorm.weight", l.post_feedforward_layernorm);
    } else {
      o.mlp_norm = post_attention;
    }
    o.gate = lin("mlp.gate_proj", l.gate_proj);
    o.up = lin("mlp.up_proj", l.up_proj);
    o.down = lin("mlp.down_proj", l.down_proj);
  }
  g.norm = vec(tp + "norm.weight", w.text.norm);
  // A stored LM head is the tied embedding unless its values differ.
  const MatrixView& h = w.text.lm_head;
  const bool tied = h.data == e.data ||
                    (h.dtype == e.dtype && h.rows == e.rows && h.cols == e.cols &&
                     std::memcmp(h.data, e.data,
                                 static_cast<size_t>(e.rows * e.cols) * dtype_size(e.dtype)) == 0);
  g.lm_head = tied ? g.embed : mat("language_model.lm_head.weight", h, {h.rows, h.cols});

  // Stored names and dtypes, from the checkpoint's keys.
  if (w.store != nullptr) {
    for (const auto& [key, view] : w.store->tensors()) {
      auto it = mp->by_name_.find(model::canonical_name(key));
      if (it == mp->by_name_.end()) continue;
      it->second->stored_name = key;
      it->second->stored_dtype = view.dtype;
    }
  }

  // Resolution change: resample the position embeddings over the patch grid.
  if (image_size > 0 && image_size != v.image_size) {
    if (image_size % v.patch_size != 0) {
      return invalid_argument("image size " + str(image_size) +
                              " is not a multiple of the patch size " + str(v.patch_size));
    }
    const int64_t g0 = v.grid(), g1 = image_size / v.patch_size;
    Param* pos = sv.position_embedding;
    pos->value = resample_position_embedding(pos->value, g0, g1);
    pos->shape = pos->value.shape();
    mp->config_.vision.image_size = image_size;
    mp->image_size_changed_ = true;
  }
  return mp;
}

Status ModelParams::select(const Selection& s) {
  if (!adapters_.empty() || !trainable().empty())
    return internal_error("parameters already selected");
  selection_ = s;
  switch (s.mode) {
    case TrainMode::kFull:
      for (Param* p : all_) {
        if (s.freeze_vision && p->name.rfind("vision_tower.", 0) == 0) continue;
        make_trainable(*p);
      }
      break;
    case TrainMode::kAttention:
      for (GemmaLayerParams& l : text.layers) {
        for (Linear* lin : {&l.q, &l.k, &l.v, &l.o}) make_trainable(*lin->weight);
      }
      break;
    case TrainMode::kLora: {
      if (s.lora_rank < 1) return invalid_argument("--lora-rank must be at least 1");
      for (GemmaLayerParams& l : text.layers) {
        for (Linear* lin : {&l.q, &l.k, &l.v, &l.o, &l.gate, &l.up, &l.down}) {
          auto a = std::make_unique<LoraAdapter>();
          const std::string base = module_of(lin->weight->name);
          const int64_t r = s.lora_rank, in = lin->in(), out = lin->out();
          a->scale = s.lora_alpha / static_cast<float>(r);
          a->a.name = base + ".lora_A.weight";
          a->a.shape = {r, in};
          a->b.name = base + ".lora_B.weight";
          a->b.shape = {out, r};
          for (Param* f : {&a->a, &a->b}) {
            f->stored_name = f->name;
            f->matrix = true;
            f->decay = true;
            f->value = Tensor(f->shape);
            f->view = MatrixView{DType::kF32, f->value.data(), f->shape[0], f->shape[1]};
            make_trainable(*f);
            by_name_[f->name] = f;
          }
          // A ~ U(-1/sqrt(in), 1/sqrt(in)) (PEFT's kaiming-uniform), B = 0: starts as the base.
          Rng rng(s.seed ^ fnv1a(a->a.name));
          const float bound = 1.0f / std::sqrt(static_cast<float>(in));
          for (int64_t i = 0; i < a->a.numel(); ++i)
            a->a.value.data()[i] = rng.uniform(-bound, bound);
          lin->lora = a.get();
          adapters_.push_back(std::move(a));
        }
      }
      break;
    }
  }
  return Status::Ok();
}

std::vector<Param*> ModelParams::trainable() const {
  std::vector<Param*> out;
  for (Param* p : all_) {
    if (p->trainable) out.push_back(p);
  }
  for (const auto& a : adapters_) {
    out.push_back(&a->a);
    out.push_back(&a->b);
  }
  return out;
}

Param* ModelParams::find(const std::string& name) const {
  auto it = by_name_.find(name);
  return it == by_name_.end() ? nullptr : it->second;
}

void ModelParams::zero_grads() {
  for (Param* p : trainable())
    std::memset(p->grad.data(), 0, sizeof(float) * static_cast<size_t>(p->grad.numel()));
}

bool ModelParams::vision_trains() const {
  for (Param* p : all_) {
    if (p->trainable && p->name.rfind("vision_tower.", 0) == 0) return true;
  }
  return false;
}

bool ModelParams::projector_trains() const {
  return projector.weight->trainable || projector.bias->trainable;
}

bool ModelParams::embedding_trains() const { return text.embed->trainable; }

Tensor param_f32(const Param& p) {
  Tensor out(p.shape);
  if (p.matrix) {
    matrix_to_f32(p.view, out.data());
  } else {
    std::memcpy(out.data(), p.value.data(), sizeof(float) * static_cast<size_t>(p.numel()));
  }
  return out;
}

// pos: [g0*g0, W] -> [g1*g1, W].
Tensor resample_position_embedding(const Tensor& pos, int64_t g0, int64_t g1) {
  const int64_t W = pos.dim(1);
  Tensor out({g1 * g1, W});
  // Source coordinate of output index o along one axis: (o + 0.5) * g0 / g1 - 0.5, clamped.
  auto taps = [&](int64_t o, int64_t& i0, int64_t& i1, float& f) {
    double src =
        (static_cast<double>(o) + 0.5) * static_cast<double>(g0) / static_cast<double>(g1) - 0.5;
    src = std::min(std::max(src, 0.0), static_cast<double>(g0 - 1));
    i0 = static_cast<int64_t>(std::floor(src));
    i1 = std::min(i0 + 1, g0 - 1);
    f = static_cast<float>(src - static_cast<double>(i0));
  };
  for (int64_t y = 0; y < g1; ++y) {
    int64_t y0, y1;
    float fy;
    taps(y, y0, y1, fy);
    for (int64_t x = 0; x < g1; ++x) {
      int64_t x0, x1;
      float fx;
      taps(x, x0, x1, fx);
      const float* a = pos.row(y0 * g0 + x0);
      const float* b = pos.row(y0 * g0 + x1);
      const float* c = pos.row(y1 * g0 + x0);
      const float* d = pos.row(y1 * g0 + x1);
      float* o = out.row(y * g1 + x);
      for (int64_t i = 0; i < W; ++i) {
        const float top = a[i] + (b[i] - a[i]) * fx;
        const float bottom = c[i] + (d[i] - c[i]) * fx;
        o[i] = top + (bottom - top) * fy;
      }
    }
  }
  return out;
}

}  // namespace pg::train
