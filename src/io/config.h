// config.json of a Hugging Face PaliGemma checkpoint, with the HF defaults applied to
// every omitted key (PaliGemmaConfig, SiglipVisionConfig, GemmaConfig, Gemma2Config).
#pragma once

#include <cstdint>
#include <string>

#include "base/status.h"

namespace pg::io {

struct VisionConfig {
  int64_t hidden_size = 768;  // SiglipVisionConfig defaults (used when a key is omitted)
  int64_t intermediate_size = 3072;
  int64_t num_hidden_layers = 12;
  int64_t num_attention_heads = 12;
  int64_t num_channels = 3;
  int64_t image_size = 224;
  int64_t patch_size = 16;
  float layer_norm_eps = 1e-6f;
  std::string hidden_act = "gelu_pytorch_tanh";

  int64_t grid() const { return image_size / patch_size; }  // patches per side
  int64_t num_patches() const { return grid() * grid(); }
  int64_t head_dim() const { return hidden_size / num_attention_heads; }
};

enum class DecoderKind { kGemma, kGemma2 };

struct TextConfig {
  DecoderKind kind = DecoderKind::kGemma;
  std::string model_type = "gemma";
  int64_t vocab_size = 256000;
  int64_t hidden_size = 3072;
  int64_t intermediate_size = 24576;
  int64_t num_hidden_layers = 28;
  int64_t num_attention_heads = 16;
  int64_t num_key_value_heads = 16;
  int64_t head_dim = 256;
  int64_t max_position_embeddings = 8192;
  float rms_norm_eps = 1e-6f;
  float rope_theta = 10000.0f;
  std::string hidden_activation = "gelu_pytorch_tanh";
  // Gemma 2 only (0 = off).
  float query_pre_attn_scalar = 0.0f;
  float attn_logit_softcapping = 0.0f;
  float final_logit_softcapping = 0.0f;
  int64_t sliding_window = 0;

  bool is_gemma2() const { return kind == DecoderKind::kGemma2; }
  // Scale of attention scores: query_pre_attn_scalar^-0.5 (Gemma 2), head_dim^-0.5 (Gemma).
  float attention_scale() const;
  // Whether layer `i` uses the sliding window (Gemma 2: even layers).
  bool layer_is_sliding(int64_t i) const { return is_gemma2() && sliding_window > 0 && i % 2 == 0; }
};

struct PaliGemmaConfig {
  VisionConfig vision;
  TextConfig text;
  int64_t projection_dim = 2048;
  int64_t image_token_index = 256000;
  int64_t bos_token_id = 2;
  int64_t eos_token_id = 1;
  int64_t pad_token_id = 0;

  int64_t num_image_tokens() const { return vision.num_patches(); }
};

// Parses config.json text. `source` names the file in error messages. Checks that
// every present key has the right JSON type and that sizes are consistent (heads divide
// widths, the projector maps to the text width, the image size is a multiple of the
// patch size).
Result<PaliGemmaConfig> parse_config(const std::string& json_text, const std::string& source);
// Reads DIR/config.json.
Result<PaliGemmaConfig> load_config(const std::string& dir);

}  // namespace pg::io
