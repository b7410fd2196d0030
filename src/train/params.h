// The model's parameters as training sees them: every tensor of the checkpoint under its
// HF name, typed by role (the same fields as model/weights.h), with a float32 master
// copy and a gradient for the trained ones only. Frozen matrices stay in the
// checkpoint's memory mapping in their stored dtype (bf16 for PaliGemma 2), so frozen
// parts cost neither gradients nor optimiser state.
#pragma once

#include <cstdint>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "base/status.h"
#include "io/config.h"
#include "model/paligemma.h"
#include "tensor/tensor.h"

namespace pg::train {

// What to train (issue: --train full | attention | lora).
enum class TrainMode {
  kFull,       // every parameter (minus SigLIP with freeze_vision)
  kAttention,  // the decoder's q, k, v, o projections only (big_vision's transfer notebook)
  kLora,       // rank-r adapters on the decoder's q, k, v, o, gate, up, down; base frozen
};
Result<TrainMode> parse_train_mode(const std::string& name);
const char* train_mode_name(TrainMode mode);

// One parameter: a weight matrix, bias, norm scale, embedding table, or LoRA factor.
struct Param {
  std::string name;         // canonical HF name, e.g. "language_model.model.norm.weight"
  std::string stored_name;  // its key in the source checkpoint (newer naming possible)
  Shape shape;
  DType stored_dtype = DType::kF32;
  bool matrix = false;  // read through `view` ([shape[0], rest]); else through `value`
  bool trainable = false;
  bool decay = false;  // weight decay applies (matrices)
  MatrixView view;     // matrices: the master when trainable, else the stored data
  Tensor value;        // float32: vectors always; matrices when trainable (master)
  Tensor grad;         // trainable only: same shape as value

  int64_t numel() const { return shape_numel(shape); }
  const float* data() const { return value.data(); }
};

// y = x A^T B^T * scale added to a frozen Linear. A: [r, in] (random), B: [out, r] (zero).
struct LoraAdapter {
  Param a, b;
  float scale = 0.0f;  // alpha / r
};

// A Linear layer y = x W^T (+ b) (+ LoRA).
struct Linear {
  Param* weight = nullptr;
  Param* bias = nullptr;
  LoraAdapter* lora = nullptr;
  int64_t out() const { return weight->view.rows; }
  int64_t in() const { return weight->view.cols; }
};

struct SiglipLayerParams {
  Param *ln1_w = nullptr, *ln1_b = nullptr;
  Linear q, k, v, o;
  Param *ln2_w = nullptr, *ln2_b = nullptr;
  Linear fc1, fc2;
};

struct SiglipParams {
  Linear patch;                         // [W, C*P*P] with bias
  Param* position_embedding = nullptr;  // [N, W]
  std::vector<SiglipLayerParams> layers;
  Param *post_ln_w = nullptr, *post_ln_b = nullptr;
};

struct GemmaLayerParams {
  Param* input_norm = nullptr;
  Linear q, k, v, o;
  Param* post_attn_norm = nullptr;  // Gemma 2 only: applied to the attention output
  Param* mlp_norm = nullptr;        // before the MLP (Gemma: post_attention_layernorm)
  Param* post_ff_norm = nullptr;    // Gemma 2 only: applied to the MLP output
  Linear gate, up, down;
};

struct GemmaParams {
  Param* embed = nullptr;    // [V, H]
  Param* lm_head = nullptr;  // == embed when tied (PaliGemma)
  std::vector<GemmaLayerParams> layers;
  Param* norm = nullptr;
};

struct Selection {
  TrainMode mode = TrainMode::kFull;
  bool freeze_vision = false;
  int64_t lora_rank = 8;
  float lora_alpha = 16.0f;
  uint64_t seed = 0;  // LoRA initialisation
};

class ModelParams {
 public:
  // Wraps `model` (which must outlive this). image_size > 0 and different from the
  // checkpoint's: SigLIP's position embeddings are resampled (bilinear) to the new grid and
  // the config says the new size.
  static Result<std::unique_ptr<ModelParams>> create(const model::PaliGemma& model,
                                                     int64_t image_size);

  // Marks what trains, makes float32 masters and gradients for it, adds LoRA adapters.
  Status select(const Selection& s);

  const io::PaliGemmaConfig& config() const { return config_; }
  const Selection& selection() const { return selection_; }
  bool image_size_changed() const { return image_size_changed_; }

  // Every parameter of the checkpoint, in name-table order (no LoRA factors).
  const std::vector<Param*>& all() const { return all_; }
  // What the optimiser updates: trained parameters and LoRA factors, in a fixed order.
  std::vector<Param*> trainable() const;
  const std::vector<std::unique_ptr<LoraAdapter>>& adapters() const { return adapters_; }
  Param* find(const std::string& name) const;
  void zero_grads();

  // Whether any parameter of a part trains (and so needs a backward pass).
  bool vision_trains() const;
  bool projector_trains() const;
  bool embedding_trains() const;

  SiglipParams vision;
  Linear projector;
  GemmaParams text;

 private:
  ModelParams() = default;
  Param* add(const std::string& name, Shape shape, bool matrix);
  io::PaliGemmaConfig config_;
  Selection selection_;
  bool image_size_changed_ = false;
  std::vector<std::unique_ptr<Param>> owned_;
  std::vector<Param*> all_;
  std::map<std::string, Param*> by_name_;
  std::vector<std::unique_ptr<LoraAdapter>> adapters_;
};

// Float32 copy of any parameter's current value (LoRA not merged). Shape: p.shape.
Tensor param_f32(const Param& p);

// SigLIP position embeddings [g0*g0, W] -> [g1*g1, W], bilinear over the patch grid with
// half-pixel centres (jax.image.resize / torch align_corners=False).
Tensor resample_position_embedding(const Tensor& pos, int64_t g0, int64_t g1);

}  // namespace pg::train
