// PaliGemma's weights as typed structs, filled from one name table (weights.cc) with a
// shape and dtype check for every tensor the config implies.
//
// Large matrices stay in the checkpoint's memory mapping in their stored dtype
// (MatrixView); small vectors (norm scales, biases, position embeddings) are copied to
// float32 Tensors.
#pragma once

#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "base/status.h"
#include "io/config.h"
#include "io/safetensors.h"
#include "tensor/tensor.h"

namespace pg::model {

struct SiglipLayerWeights {
  Tensor layer_norm1_weight, layer_norm1_bias;                  // [W]
  MatrixView q_proj, k_proj, v_proj, out_proj;                  // [W, W]
  Tensor q_proj_bias, k_proj_bias, v_proj_bias, out_proj_bias;  // [W]
  Tensor layer_norm2_weight, layer_norm2_bias;                  // [W]
  MatrixView fc1;                                               // [I, W]
  Tensor fc1_bias;                                              // [I]
  MatrixView fc2;                                               // [W, I]
  Tensor fc2_bias;                                              // [W]
};

struct SiglipWeights {
  MatrixView patch_embedding;   // [W, C*P*P]: the conv kernel [W, C, P, P], flattened
  Tensor patch_embedding_bias;  // [W]
  Tensor position_embedding;    // [N, W]
  std::vector<SiglipLayerWeights> layers;
  Tensor post_layernorm_weight, post_layernorm_bias;  // [W]
};

struct ProjectorWeights {
  MatrixView linear;   // [H, W]
  Tensor linear_bias;  // [H]
};

struct GemmaLayerWeights {
  Tensor input_layernorm;             // [H]
  MatrixView q_proj;                  // [Hq*D, H]
  MatrixView k_proj, v_proj;          // [Hkv*D, H]
  MatrixView o_proj;                  // [H, Hq*D]
  Tensor post_attention_layernorm;    // [H] (Gemma: before the MLP; Gemma 2: after attention)
  Tensor pre_feedforward_layernorm;   // [H], Gemma 2 only
  Tensor post_feedforward_layernorm;  // [H], Gemma 2 only
  MatrixView gate_proj, up_proj;      // [I, H]
  MatrixView down_proj;               // [H, I]
};

struct GemmaWeights {
  MatrixView embed_tokens;  // [V, H]
  std::vector<GemmaLayerWeights> layers;
  Tensor norm;         // [H]
  MatrixView lm_head;  // [V, H]: embed_tokens unless the checkpoint stores its own
};

struct PaliGemmaWeights {
  SiglipWeights vision;
  ProjectorWeights projector;
  GemmaWeights text;
  // Keeps the mapped files (and any realigned copies) alive.
  std::shared_ptr<io::TensorStore> store;
  std::vector<std::shared_ptr<void>> owned;
};

// How matrices are held while running.
enum class WeightType {
  kAsStored,  // as the checkpoint stores them (mapped, no copy)
  kF32,
  kBF16,
  kInt8,  // q8 blocks everywhere (decoder, LM head, vision tower, projector)
  kQ4,    // q4 blocks for the decoder and LM head; the vision tower in q8
  kW8A8,  // where kInt8 has q8: q8 with one scale per row (per output channel), whose
          // prefill products run as int8 x int8 on AMX tiles (x quantized per row)
};
// "f32", "bf16", "int8", "q4", "w8a8" (and "auto" for kAsStored).
Result<WeightType> parse_weight_type(const std::string& name);
const char* weight_type_name(WeightType type);

// Calls fn(name, matrix, is_vision) for every matrix of the name table (the LM head
// last, only when it is not tied to embed_tokens).
void for_each_matrix(const io::PaliGemmaConfig& config, PaliGemmaWeights& w,
                     const std::function<void(const std::string&, MatrixView&, bool)>& fn);

// Converts the matrices to `type`. The token embedding keeps its stored format for
// lookups; a tied LM head gets its own converted copy.
void convert_weights(const io::PaliGemmaConfig& config, PaliGemmaWeights& w, WeightType type);

// Weights of the right shapes filled with small random values, directly in `type`
// (benchmarks of the real sizes without a download).
PaliGemmaWeights random_weights(const io::PaliGemmaConfig& config, WeightType type, uint64_t seed);

// Every weight under its canonical name in the format it is held in (what
// `paligemma quantize` writes): matrices as stored or converted (a quantized matrix adds
// NAME.scales), vectors as float32, the LM head only when it is not tied. Views point
// into `w`.
std::vector<io::TensorToWrite> export_weights(const io::PaliGemmaConfig& config,
                                              PaliGemmaWeights& w);

// File name of a quantized checkpoint's weights (never model.safetensors, so that no
// Hugging Face loader mistakes the folder for one of its own).
inline constexpr const char* kQuantizedWeightsFile = "model.pgq.safetensors";
// Its metadata's "block_layout" for q8 / q4 codes in groups of 16 blocks (tensor.h). Files
// without it (format_version 1) hold each block's bytes together; the loader repacks them.
inline constexpr const char* kGroupLayout = "groups16";

// Bytes a decode step streams: every decoder matrix plus the LM head.
int64_t decoder_bytes_per_token(const PaliGemmaWeights& w);

// Canonical (original HF) name of a checkpoint key: the newer transformers layout
// (model.language_model.*, model.vision_tower.*, model.multi_modal_projector.*,
// lm_head.weight) maps onto language_model.model.*, vision_tower.*,
// multi_modal_projector.*, language_model.lm_head.weight.
std::string canonical_name(const std::string& key);

// Fills every weight from `store`. Errors name the tensor, the expected and the found
// shape or dtype; tensors the config does not imply are listed in `warnings`.
Result<PaliGemmaWeights> load_weights(const io::PaliGemmaConfig& config,
                                      std::shared_ptr<io::TensorStore> store,
                                      std::vector<std::string>* warnings);

}  // namespace pg::model
