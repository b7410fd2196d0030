#include "model/paligemma.h"

#include <cmath>
#include <filesystem>

#include "base/memory.h"
#include "model/gemma.h"
#include "model/projector.h"
#include "model/siglip.h"
#include "model/trace.h"

namespace pg::model {

std::unique_ptr<PaliGemma> PaliGemma::from_weights(io::PaliGemmaConfig config,
                                                   PaliGemmaWeights weights) {
  keep_freed_memory();
  auto m = std::unique_ptr<PaliGemma>(new PaliGemma());
  m->config_ = std::move(config);
  m->weights_ = std::move(weights);
  return m;
}

Result<std::unique_ptr<PaliGemma>> PaliGemma::load(const std::string& dir,
                                                   std::vector<std::string>* warnings,
                                                   WeightType type) {
  keep_freed_memory();
  auto m = std::unique_ptr<PaliGemma>(new PaliGemma());
  PG_ASSIGN_OR_RETURN(m->config_, io::load_config(dir));
  // A folder written by `paligemma quantize` holds model.pgq.safetensors instead.
  const std::string quantized = dir + "/" + kQuantizedWeightsFile;
  std::error_code ec;
  const bool is_quantized = std::filesystem::exists(quantized, ec);
  PG_ASSIGN_OR_RETURN(io::TensorStore store, is_quantized ? io::TensorStore::open_file(quantized)
                                                          : io::TensorStore::open_dir(dir));
  auto shared = std::make_shared<io::TensorStore>(std::move(store));
  auto w = load_weights(m->config_, shared, warnings);
  if (!w.ok()) return w.status().with_context(dir);
  m->weights_ = std::move(w).value();
  // A folder written by `quantize` in a low-precision format runs as that format would.
  auto fmt = shared->metadata().find("weights");
  if (is_quantized && fmt != shared->metadata().end() && fmt->second != "f32" &&
      type == WeightType::kAsStored) {
    for_each_matrix(m->config_, m->weights_,
                    [](const std::string&, MatrixView& mv, bool) { mv.low_precision = true; });
    m->weights_.text.lm_head.low_precision = true;
  }
  convert_weights(m->config_, m->weights_, type);
  return m;
}

Tensor PaliGemma::image_features(const std::vector<Tensor>& pixel_values) const {
  const int64_t N = config_.num_image_tokens(), H = config_.text.hidden_size;
  Tensor features({static_cast<int64_t>(pixel_values.size()) * N, H});
  // HF divides by hidden_size**0.5 (a Python float) in float32.
  const float sqrt_h = static_cast<float>(std::sqrt(static_cast<double>(H)));
  for (size_t i = 0; i < pixel_values.size(); ++i) {
    Tensor encoded = siglip_encode(weights_.vision, config_.vision, pixel_values[i]);
    Tensor projected = project(weights_.projector, encoded);
    float* dst = features.row(static_cast<int64_t>(i) * N);
    for (int64_t j = 0; j < N * H; ++j) dst[j] = projected.data()[j] / sqrt_h;
  }
  trace("image_features", features);
  return features;
}

KvCache PaliGemma::new_cache(int64_t capacity) const {
  const io::TextConfig& t = config_.text;
  // bf16 keys and values where the attention's products round them to bf16 anyway.
  const bool low_precision =
      !weights_.text.layers.empty() && weights_.text.layers.front().q_proj.low_precision;
  return KvCache(t.num_hidden_layers, capacity, t.num_key_value_heads * t.head_dim,
                 low_precision ? DType::kBF16 : DType::kF32);
}

Tensor PaliGemma::forward(const std::vector<int>& ids, const Tensor* image_features, KvCache& cache,
                          int64_t prefix_len, HiddenRows rows) const {
  Tensor x = gemma_embed(weights_.text, config_.text, ids,
                         static_cast<int>(config_.image_token_index), image_features);
  return gemma_forward(weights_.text, config_.text, std::move(x), cache, prefix_len, rows);
}

Tensor PaliGemma::logits(const float* hidden, int64_t m) const {
  return gemma_logits(weights_.text, config_.text, hidden, m);
}

}  // namespace pg::model
