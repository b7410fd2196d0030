#include "model/weights.h"

#include <cmath>
#include <cstdint>
#include <cstring>
#include <map>

#include "base/parallel.h"
#include "kernels/quant.h"

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

bool starts_with(const std::string& s, const char* prefix) { return s.rfind(prefix, 0) == 0; }

using NameMap = std::map<std::string, std::pair<std::string, const TensorView*>>;

// Binds a quantized matrix: I8 codes [rows, nb * 32] or U8 packed codes [rows, nb * 16]
// (tensor.h), with float32 scales [rows, nb] under NAME.scales. A file without the
// metadata's "block_layout" (format_version 1) holds each block's bytes together (and q8 rows
// of cols bytes): its codes are repacked into an owned buffer.
Status bind_quantized(Slot& slot, const std::string& stored, const TensorView& view,
                      const io::TensorStore& store, const NameMap& by_name,
                      std::map<std::string, bool>& used, PaliGemmaWeights& w) {
  const std::string where = "tensor '" + stored + "' in " + store.file_of(stored);
  const int64_t rows = slot.shape[0], cols = shape_numel(slot.shape) / rows,
                nb = quant_blocks(cols);
  auto layout = store.metadata().find("block_layout");
  const bool grouped = layout != store.metadata().end();
  if (grouped && layout->second != kGroupLayout) {
    return invalid_argument(where + ": unknown block_layout \"" + layout->second +
                            "\" (this build reads \"" + kGroupLayout +
                            "\" and folders without one)");
  }
  const Shape want = view.dtype == DType::kI8 ? Shape{rows, grouped ? nb * kQuantBlock : cols}
                                              : Shape{rows, nb * kQuantBlock / 2};
  if (view.shape != want) {
    return invalid_argument(where + ": expected " + dtype_name(view.dtype) + " codes of shape " +
                            shape_to_string(want) + ", found " + shape_to_string(view.shape));
  }
  auto it = by_name.find(slot.name + ".scales");
  if (it == by_name.end())
    return not_found(where + ": quantized, but its scales '" + slot.name + ".scales' are missing");
  const TensorView& sv = *it->second.second;
  if (sv.dtype != DType::kF32 || sv.shape != Shape{rows, nb}) {
    return invalid_argument("tensor '" + it->second.first + "': expected F32 scales of shape " +
                            shape_to_string({rows, nb}) + ", found " + dtype_name(sv.dtype) + " " +
                            shape_to_string(sv.shape));
  }
  used[slot.name + ".scales"] = true;
  const float* scales = static_cast<const float*>(sv.data);
  if (reinterpret_cast<uintptr_t>(scales) % alignof(float) != 0) {
    auto copy = std::make_shared<std::vector<float>>(static_cast<size_t>(rows * nb));
    std::memcpy(copy->data(), sv.data, sv.nbytes());
    scales = copy->data();
    w.owned.push_back(copy);
  }
  const void* codes = view.data;
  if (!grouped) {
    auto copy = std::make_shared<LineAlignedVector<uint8_t>>(
        kernels::from_block_layout(view.dtype, static_cast<const uint8_t*>(view.data), rows, cols));
    codes = copy->data();
    w.owned.push_back(copy);
  }
  *slot.matrix = MatrixView{view.dtype, codes, rows, cols, scales};
  // A w8a8 folder's q8 matrices carry one scale per row (in every block of it).
  auto weights = store.metadata().find("weights");
  if (view.dtype == DType::kI8 && weights != store.metadata().end() &&
      weights->second == weight_type_name(WeightType::kW8A8)) {
    if (!kernels::has_row_scales(*slot.matrix)) {
      return invalid_argument(where + ": the folder's weights are w8a8, but the scales of '" +
                              slot.name + ".scales' differ within a row");
    }
    slot.matrix->row_scales = true;
  }
  return Status::Ok();
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
    const bool quantized =
        slot.matrix != nullptr && (view.dtype == DType::kI8 || view.dtype == DType::kU8);
    if (view.shape != slot.shape && !quantized) {
      return invalid_argument(where + ": expected shape " + shape_to_string(slot.shape) +
                              ", found " + shape_to_string(view.shape));
    }
    if (view.dtype != DType::kF32 && view.dtype != DType::kBF16 && view.dtype != DType::kF16 &&
        !quantized) {
      return invalid_argument(where + ": dtype " + dtype_name(view.dtype) +
                              " is not a float type (expected F32, BF16 or F16)");
    }
    if (slot.vector != nullptr) {
      *slot.vector = Tensor::from_view(view);
      continue;
    }
    if (view.dtype == DType::kI8 || view.dtype == DType::kU8) {
      // A quantized matrix (written by `paligemma quantize`): codes plus NAME.scales.
      PG_RETURN_IF_ERROR(bind_quantized(slot, stored, view, *store, by_name, used, w));
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

namespace pg::model {

Result<WeightType> parse_weight_type(const std::string& name) {
  if (name == "auto") return WeightType::kAsStored;
  if (name == "f32") return WeightType::kF32;
  if (name == "bf16") return WeightType::kBF16;
  if (name == "int8") return WeightType::kInt8;
  if (name == "q4") return WeightType::kQ4;
  if (name == "w8a8") return WeightType::kW8A8;
  return invalid_argument("unknown weight type \"" + name +
                          "\" (expected f32, bf16, int8, q4, w8a8 or auto)");
}

const char* weight_type_name(WeightType type) {
  switch (type) {
    case WeightType::kAsStored: return "auto";
    case WeightType::kF32: return "f32";
    case WeightType::kBF16: return "bf16";
    case WeightType::kInt8: return "int8";
    case WeightType::kQ4: return "q4";
    case WeightType::kW8A8: return "w8a8";
  }
  return "?";
}

void for_each_matrix(const io::PaliGemmaConfig& config, PaliGemmaWeights& w,
                     const std::function<void(const std::string&, MatrixView&, bool)>& fn) {
  const bool tied = w.text.lm_head.data == w.text.embed_tokens.data;
  for (Slot& slot : name_table(config, w)) {
    if (slot.matrix == nullptr) continue;
    if (slot.matrix == &w.text.lm_head && tied) continue;
    fn(slot.name, *slot.matrix, slot.name.rfind("vision_tower.", 0) == 0);
  }
}

namespace {

// Replaces `m` by a copy in `type` (I8 with one scale per row where `row_scales`), kept
// alive by w.owned.
void convert_matrix(MatrixView& m, DType target, PaliGemmaWeights& w, bool row_scales = false) {
  if (m.dtype == target && m.row_scales == (target == DType::kI8 && row_scales)) return;
  if (m.dtype == DType::kI8 && target == DType::kI8 && !row_scales) {
    m.row_scales = false;  // (w8a8 codes are q8 with equal block scales: exact as q8)
    return;
  }
  if (target == DType::kF32) {
    auto buf = std::make_shared<LineAlignedVector<float>>(static_cast<size_t>(m.rows * m.cols));
    const MatrixView src = m;
    parallel_for(m.rows, 16, [&](int64_t a, int64_t b) {
      for (int64_t r = a; r < b; ++r) dequantize_row(src, r, buf->data() + r * m.cols);
    });
    m = MatrixView{DType::kF32, buf->data(), m.rows, m.cols, nullptr};
    w.owned.push_back(buf);
  } else if (target == DType::kBF16) {
    auto buf = std::make_shared<LineAlignedVector<uint16_t>>(kernels::to_bf16(m));
    m = MatrixView{DType::kBF16, buf->data(), m.rows, m.cols, nullptr};
    w.owned.push_back(buf);
  } else {
    auto q =
        std::make_shared<kernels::QuantizedMatrix>(target == DType::kU8 ? kernels::quantize_q4(m)
                                                   : row_scales ? kernels::quantize_q8_rows(m)
                                                                : kernels::quantize_q8(m));
    m = q->view();
    w.owned.push_back(q);
  }
}

DType decoder_dtype(WeightType type) {
  switch (type) {
    case WeightType::kF32: return DType::kF32;
    case WeightType::kBF16: return DType::kBF16;
    case WeightType::kInt8:
    case WeightType::kW8A8: return DType::kI8;
    case WeightType::kQ4: return DType::kU8;
    case WeightType::kAsStored: break;
  }
  return DType::kF32;
}

// The vision tower of the quantized modes is q8 (int8 x int8 products) in both: 4-bit
// weights would cost the image features more accuracy than the decoder loses.
DType vision_dtype(WeightType type) {
  return type == WeightType::kInt8 || type == WeightType::kQ4 || type == WeightType::kW8A8
             ? DType::kI8
             : decoder_dtype(type);
}

}  // namespace

void convert_weights(const io::PaliGemmaConfig& config, PaliGemmaWeights& w, WeightType type) {
  if (type == WeightType::kAsStored) return;
  const bool rows = type == WeightType::kW8A8;
  // A tied head gets its own copy so that lookups keep reading the embedding.
  if (w.text.lm_head.data == w.text.embed_tokens.data &&
      decoder_dtype(type) != w.text.embed_tokens.dtype) {
    convert_matrix(w.text.lm_head, decoder_dtype(type), w, rows);
  }
  for_each_matrix(config, w, [&](const std::string& name, MatrixView& m, bool vision) {
    if (&m == &w.text.embed_tokens) return;  // lookups read single rows: leave it mapped
    convert_matrix(m, vision ? vision_dtype(type) : decoder_dtype(type), w, rows);
    m.low_precision = type != WeightType::kF32;
  });
  w.text.lm_head.low_precision = type != WeightType::kF32;
}

namespace {

uint64_t splitmix(uint64_t& s) {
  uint64_t z = (s += 0x9e3779b97f4a7c15ull);
  z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
  z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
  return z ^ (z >> 31);
}

// Uniform in [-a, a].
float uniform(uint64_t& s, float a) {
  return (static_cast<float>(splitmix(s) >> 40) / static_cast<float>(1ull << 24) * 2.0f - 1.0f) * a;
}

}  // namespace

PaliGemmaWeights random_weights(const io::PaliGemmaConfig& config, WeightType type, uint64_t seed) {
  PaliGemmaWeights w;
  std::vector<Slot> table = name_table(config, w);
  int64_t index = 0;
  for (Slot& slot : table) {
    ++index;
    if (slot.optional) continue;  // the LM head stays tied
    if (slot.vector != nullptr) {
      *slot.vector = Tensor(slot.shape);  // norm scales 0 (Gemma: 1 + w), biases 0, LN gamma below
      if (slot.name.find("layer_norm") != std::string::npos ||
          slot.name.find("layernorm.weight") != std::string::npos) {
        if (slot.name.find("vision_tower") != std::string::npos &&
            slot.name.find(".weight") != std::string::npos) {
          for (int64_t i = 0; i < slot.vector->numel(); ++i) slot.vector->data()[i] = 1.0f;
        }
      }
      if (slot.name.find("position_embedding") != std::string::npos) {
        uint64_t s = seed * 1000003 + static_cast<uint64_t>(index);
        for (int64_t i = 0; i < slot.vector->numel(); ++i)
          slot.vector->data()[i] = uniform(s, 0.02f);
      }
      continue;
    }
    const int64_t rows = slot.shape[0];
    const int64_t cols = shape_numel(slot.shape) / rows;
    const bool vision = slot.name.rfind("vision_tower.", 0) == 0;
    const bool embed = slot.matrix == &w.text.embed_tokens;
    DType dt = vision ? vision_dtype(type) : decoder_dtype(type);
    if (type == WeightType::kAsStored) dt = DType::kBF16;
    if (embed && (dt == DType::kI8 || dt == DType::kU8)) dt = DType::kBF16;
    const float scale = 0.5f / std::sqrt(static_cast<float>(cols));
    MatrixView m{dt, nullptr, rows, cols, nullptr};
    const int64_t bytes = m.row_bytes() * rows;
    auto data = std::make_shared<LineAlignedVector<uint8_t>>(static_cast<size_t>(bytes));
    std::shared_ptr<LineAlignedVector<float>> scales;
    const uint64_t base = seed * 1000003 + static_cast<uint64_t>(index) * 7919;
    parallel_for(rows, 64, [&](int64_t r0, int64_t r1) {
      for (int64_t r = r0; r < r1; ++r) {
        uint64_t s = base + static_cast<uint64_t>(r) * 0x632be59bd9b4e019ull;
        uint8_t* row = data->data() + r * m.row_bytes();
        if (dt == DType::kF32) {
          auto* f = reinterpret_cast<float*>(row);
          for (int64_t c = 0; c < cols; ++c) f[c] = uniform(s, scale);
        } else if (dt == DType::kBF16 || dt == DType::kF16) {
          auto* h = reinterpret_cast<uint16_t*>(row);
          for (int64_t c = 0; c < cols; ++c) h[c] = f32_to_bf16(uniform(s, scale));
        } else {
          for (int64_t c = 0; c < m.row_bytes(); c += 8) {
            const uint64_t v = splitmix(s);
            std::memcpy(row + c, &v, static_cast<size_t>(std::min<int64_t>(8, m.row_bytes() - c)));
          }
        }
      }
    });
    if (m.quantized()) {
      scales = std::make_shared<LineAlignedVector<float>>(
          static_cast<size_t>(rows * quant_blocks(cols)),
          dt == DType::kI8 ? scale / 127.0f : scale / 8.0f);
      m.scales = scales->data();
      w.owned.push_back(scales);
    }
    m.data = data->data();
    m.low_precision = type != WeightType::kF32;
    m.row_scales = dt == DType::kI8 && type == WeightType::kW8A8;
    w.owned.push_back(data);
    *slot.matrix = m;
  }
  w.text.lm_head = w.text.embed_tokens;
  if (type == WeightType::kInt8 || type == WeightType::kQ4 || type == WeightType::kW8A8) {
    convert_matrix(w.text.lm_head, decoder_dtype(type), w, type == WeightType::kW8A8);
    w.text.lm_head.low_precision = true;
  }
  return w;
}

std::vector<io::TensorToWrite> export_weights(const io::PaliGemmaConfig& config,
                                              PaliGemmaWeights& w) {
  std::vector<io::TensorToWrite> out;
  const bool tied = w.text.lm_head.data == w.text.embed_tokens.data;
  for (Slot& slot : name_table(config, w)) {
    if (slot.vector != nullptr) {
      out.push_back({slot.name, DType::kF32, slot.vector->shape(), slot.vector->data()});
      continue;
    }
    const MatrixView& m = *slot.matrix;
    if (slot.optional && tied) continue;
    if (m.quantized()) {
      out.push_back({slot.name, m.dtype, {m.rows, m.row_bytes()}, m.data});
    } else {
      out.push_back({slot.name, m.dtype, slot.shape, m.data});
    }
    if (m.quantized())
      out.push_back({slot.name + ".scales", DType::kF32, {m.rows, quant_blocks(m.cols)}, m.scales});
  }
  return out;
}

int64_t decoder_bytes_per_token(const PaliGemmaWeights& w) {
  int64_t bytes = w.text.lm_head.stream_bytes();
  for (const GemmaLayerWeights& l : w.text.layers) {
    for (const MatrixView* m :
         {&l.q_proj, &l.k_proj, &l.v_proj, &l.o_proj, &l.gate_proj, &l.up_proj, &l.down_proj}) {
      bytes += m->stream_bytes();
    }
  }
  return bytes;
}

}  // namespace pg::model
