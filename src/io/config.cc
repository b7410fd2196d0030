#include "io/config.h"

#include <cmath>
#include <nlohmann/json.hpp>

#include "io/mapped_file.h"

namespace pg::io {
namespace {

using nlohmann::json;

// Reads optional keys of one JSON object, recording the first type error.
class Reader {
 public:
  Reader(const json& obj, std::string where) : obj_(obj), where_(std::move(where)) {}

  void get(const char* key, int64_t& out) {
    const json* v = find(key);
    if (v == nullptr) return;
    if (v->is_number_integer() || v->is_number_unsigned()) {
      out = v->get<int64_t>();
    } else if (v->is_number_float() && std::floor(v->get<double>()) == v->get<double>()) {
      out = static_cast<int64_t>(v->get<double>());
    } else {
      fail(key, "an integer", *v);
    }
  }
  void get(const char* key, float& out) {
    const json* v = find(key);
    if (v == nullptr) return;
    if (v->is_number()) {
      out = v->get<float>();
    } else {
      fail(key, "a number", *v);
    }
  }
  // Like get(float) but JSON null means "off" (0).
  void get_nullable(const char* key, float& out) {
    const json* v = find(key);
    if (v != nullptr && v->is_null()) {
      out = 0.0f;
      return;
    }
    get(key, out);
  }
  void get_nullable(const char* key, int64_t& out) {
    const json* v = find(key);
    if (v != nullptr && v->is_null()) {
      out = 0;
      return;
    }
    get(key, out);
  }
  void get(const char* key, std::string& out) {
    const json* v = find(key);
    if (v == nullptr || v->is_null()) return;
    if (v->is_string()) {
      out = v->get<std::string>();
    } else {
      fail(key, "a string", *v);
    }
  }
  const Status& status() const { return status_; }

 private:
  const json* find(const char* key) const {
    auto it = obj_.find(key);
    return it == obj_.end() ? nullptr : &*it;
  }
  void fail(const char* key, const char* expected, const json& v) {
    if (!status_.ok()) return;
    status_ = invalid_argument(where_ + key + " must be " + expected + ", found " + v.dump());
  }

  const json& obj_;
  std::string where_;
  Status status_;
};

Status positive(const std::string& source, const char* field, int64_t v) {
  if (v > 0) return Status::Ok();
  return invalid_argument(source + ": " + field + " must be positive, found " + std::to_string(v));
}

bool is_tanh_gelu(const std::string& act) {
  return act == "gelu_pytorch_tanh" || act == "gelu_fast" || act == "gelu_new" ||
         act == "gelu_python_tanh";
}

}  // namespace

float TextConfig::attention_scale() const {
  const float d = is_gemma2() ? query_pre_attn_scalar : static_cast<float>(head_dim);
  return 1.0f / std::sqrt(d);
}

Result<PaliGemmaConfig> parse_config(const std::string& json_text, const std::string& source) {
  json root;
  try {
    root = json::parse(json_text);
  } catch (const json::parse_error& e) {
    return invalid_argument(source + ": not valid JSON: " + e.what());
  }
  if (!root.is_object()) return invalid_argument(source + ": the top level must be a JSON object");

  PaliGemmaConfig c;
  Reader top(root, source + ": ");
  top.get("projection_dim", c.projection_dim);
  top.get("image_token_index", c.image_token_index);
  top.get("bos_token_id", c.bos_token_id);
  top.get("eos_token_id", c.eos_token_id);
  top.get("pad_token_id", c.pad_token_id);
  PG_RETURN_IF_ERROR(top.status());
  std::string model_type;
  top.get("model_type", model_type);
  if (!model_type.empty() && model_type != "paligemma") {
    return invalid_argument(source + ": model_type is \"" + model_type +
                            "\", expected \"paligemma\"");
  }

  // Vision tower. Without a vision_config, HF's PaliGemmaConfig builds SigLIP So400m/14.
  auto vit = root.find("vision_config");
  if (vit == root.end() || vit->is_null()) {
    c.vision.hidden_size = 1152;
    c.vision.intermediate_size = 4096;
    c.vision.num_hidden_layers = 27;
    c.vision.num_attention_heads = 16;
    c.vision.patch_size = 14;
  } else {
    if (!vit->is_object()) return invalid_argument(source + ": vision_config must be an object");
    Reader r(*vit, source + ": vision_config.");
    r.get("hidden_size", c.vision.hidden_size);
    r.get("intermediate_size", c.vision.intermediate_size);
    r.get("num_hidden_layers", c.vision.num_hidden_layers);
    r.get("num_attention_heads", c.vision.num_attention_heads);
    r.get("num_channels", c.vision.num_channels);
    r.get("image_size", c.vision.image_size);
    r.get("patch_size", c.vision.patch_size);
    r.get("layer_norm_eps", c.vision.layer_norm_eps);
    r.get("hidden_act", c.vision.hidden_act);
    PG_RETURN_IF_ERROR(r.status());
  }

  // Text decoder: Gemma unless text_config.model_type says gemma2.
  auto txt = root.find("text_config");
  TextConfig& t = c.text;
  if (txt == root.end() || txt->is_null()) {
    t.hidden_size = 2048;
    t.num_hidden_layers = 18;
    t.intermediate_size = 16384;
    t.num_attention_heads = 8;
    t.num_key_value_heads = 1;
    t.vocab_size = 257152;
    top.get("vocab_size", t.vocab_size);
    PG_RETURN_IF_ERROR(top.status());
  } else {
    if (!txt->is_object()) return invalid_argument(source + ": text_config must be an object");
    Reader r(*txt, source + ": text_config.");
    r.get("model_type", t.model_type);
    PG_RETURN_IF_ERROR(r.status());
    if (t.model_type == "gemma2") {
      t.kind = DecoderKind::kGemma2;  // Gemma2Config defaults
      t.hidden_size = 2304;
      t.intermediate_size = 9216;
      t.num_hidden_layers = 26;
      t.num_attention_heads = 8;
      t.num_key_value_heads = 4;
      t.query_pre_attn_scalar = 256.0f;
      t.attn_logit_softcapping = 50.0f;
      t.final_logit_softcapping = 30.0f;
      t.sliding_window = 4096;
    } else if (t.model_type != "gemma") {
      return unimplemented(source + ": text_config.model_type \"" + t.model_type +
                           "\" is not supported (expected \"gemma\" or \"gemma2\")");
    }
    r.get("vocab_size", t.vocab_size);
    r.get("hidden_size", t.hidden_size);
    r.get("intermediate_size", t.intermediate_size);
    r.get("num_hidden_layers", t.num_hidden_layers);
    r.get("num_attention_heads", t.num_attention_heads);
    r.get("num_key_value_heads", t.num_key_value_heads);
    r.get("head_dim", t.head_dim);
    r.get("max_position_embeddings", t.max_position_embeddings);
    r.get("rms_norm_eps", t.rms_norm_eps);
    r.get("rope_theta", t.rope_theta);
    r.get("hidden_activation", t.hidden_activation);
    if (t.is_gemma2()) {
      r.get("query_pre_attn_scalar", t.query_pre_attn_scalar);
      r.get_nullable("attn_logit_softcapping", t.attn_logit_softcapping);
      r.get_nullable("final_logit_softcapping", t.final_logit_softcapping);
      r.get_nullable("sliding_window", t.sliding_window);
    }
    PG_RETURN_IF_ERROR(r.status());
  }

  // Consistency.
  const VisionConfig& v = c.vision;
  PG_RETURN_IF_ERROR(positive(source, "vision_config.hidden_size", v.hidden_size));
  PG_RETURN_IF_ERROR(positive(source, "vision_config.intermediate_size", v.intermediate_size));
  PG_RETURN_IF_ERROR(positive(source, "vision_config.num_hidden_layers", v.num_hidden_layers));
  PG_RETURN_IF_ERROR(positive(source, "vision_config.num_attention_heads", v.num_attention_heads));
  PG_RETURN_IF_ERROR(positive(source, "vision_config.image_size", v.image_size));
  PG_RETURN_IF_ERROR(positive(source, "vision_config.patch_size", v.patch_size));
  PG_RETURN_IF_ERROR(positive(source, "vision_config.num_channels", v.num_channels));
  if (v.hidden_size % v.num_attention_heads != 0) {
    return invalid_argument(
        source + ": vision_config.hidden_size " + std::to_string(v.hidden_size) +
        " is not a multiple of num_attention_heads " + std::to_string(v.num_attention_heads));
  }
  if (v.image_size % v.patch_size != 0) {
    return invalid_argument(source + ": vision_config.image_size " + std::to_string(v.image_size) +
                            " is not a multiple of patch_size " + std::to_string(v.patch_size));
  }
  if (v.image_size > 8192) {
    return invalid_argument(source + ": vision_config.image_size " + std::to_string(v.image_size) +
                            " is larger than 8192");
  }
  PG_RETURN_IF_ERROR(positive(source, "text_config.hidden_size", t.hidden_size));
  PG_RETURN_IF_ERROR(positive(source, "text_config.intermediate_size", t.intermediate_size));
  PG_RETURN_IF_ERROR(positive(source, "text_config.num_hidden_layers", t.num_hidden_layers));
  PG_RETURN_IF_ERROR(positive(source, "text_config.num_attention_heads", t.num_attention_heads));
  PG_RETURN_IF_ERROR(positive(source, "text_config.num_key_value_heads", t.num_key_value_heads));
  PG_RETURN_IF_ERROR(positive(source, "text_config.head_dim", t.head_dim));
  PG_RETURN_IF_ERROR(positive(source, "text_config.vocab_size", t.vocab_size));
  PG_RETURN_IF_ERROR(
      positive(source, "text_config.max_position_embeddings", t.max_position_embeddings));
  PG_RETURN_IF_ERROR(positive(source, "projection_dim", c.projection_dim));
  if (t.head_dim % 2 != 0) {
    return invalid_argument(source + ": text_config.head_dim " + std::to_string(t.head_dim) +
                            " must be even for rotary embeddings");
  }
  if (t.num_attention_heads % t.num_key_value_heads != 0) {
    return invalid_argument(
        source + ": text_config.num_attention_heads " + std::to_string(t.num_attention_heads) +
        " is not a multiple of num_key_value_heads " + std::to_string(t.num_key_value_heads));
  }
  if (c.projection_dim != t.hidden_size) {
    return invalid_argument(source + ": projection_dim " + std::to_string(c.projection_dim) +
                            " differs from text_config.hidden_size " +
                            std::to_string(t.hidden_size) +
                            ": image features would not fit the decoder");
  }
  if (t.is_gemma2() && t.query_pre_attn_scalar <= 0.0f) {
    return invalid_argument(source + ": text_config.query_pre_attn_scalar must be positive");
  }
  if (c.image_token_index < 0 || c.image_token_index >= t.vocab_size) {
    return invalid_argument(source + ": image_token_index " + std::to_string(c.image_token_index) +
                            " is outside the vocabulary of " + std::to_string(t.vocab_size) +
                            " rows");
  }
  if (!is_tanh_gelu(t.hidden_activation)) {
    return unimplemented(source + ": text_config.hidden_activation \"" + t.hidden_activation +
                         "\" is not supported (PaliGemma uses gelu_pytorch_tanh)");
  }
  if (!is_tanh_gelu(v.hidden_act)) {
    return unimplemented(source + ": vision_config.hidden_act \"" + v.hidden_act +
                         "\" is not supported (SigLIP uses gelu_pytorch_tanh)");
  }
  return c;
}

Result<PaliGemmaConfig> load_config(const std::string& dir) {
  const std::string path = dir + "/config.json";
  PG_ASSIGN_OR_RETURN(std::string text, read_file(path));
  return parse_config(text, path);
}

}  // namespace pg::io
