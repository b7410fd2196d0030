// PaliGemma = SigLIP encoder -> linear projector -> Gemma decoder (SPEC section 1).
#pragma once

#include <memory>
#include <string>
#include <vector>

#include "base/status.h"
#include "io/config.h"
#include "model/gemma.h"
#include "model/kv_cache.h"
#include "model/weights.h"
#include "tensor/tensor.h"

namespace pg::model {

class PaliGemma {
 public:
  // Reads DIR/config.json and the safetensors of DIR (one file or shards + index).
  // Matrices are converted to `type` (kAsStored keeps the mapping).
  static Result<std::unique_ptr<PaliGemma>> load(const std::string& dir,
                                                 std::vector<std::string>* warnings,
                                                 WeightType type = WeightType::kAsStored);
  static std::unique_ptr<PaliGemma> from_weights(io::PaliGemmaConfig config,
                                                 PaliGemmaWeights weights);

  const io::PaliGemmaConfig& config() const { return config_; }
  const PaliGemmaWeights& weights() const { return weights_; }

  // pixel_values: one [C, S, S] tensor per image -> image features [n * N, H]:
  // the projector output divided by sqrt(H), image after image.
  Tensor image_features(const std::vector<Tensor>& pixel_values) const;

  // A cache with room for `capacity` tokens: bf16 keys and values in the low-precision
  // modes, float32 otherwise.
  KvCache new_cache(int64_t capacity) const;

  // Runs tokens `ids` (image placeholders filled from `image_features` in order) at
  // cache rows [cache.length(), +T) and returns the final hidden states [T, H], or with
  // HiddenRows::kLast the last one's [1, H] (the next token's; the last layer skips the
  // other rows' work). Keys j < prefix_len are visible to all queries.
  Tensor forward(const std::vector<int>& ids, const Tensor* image_features, KvCache& cache,
                 int64_t prefix_len, HiddenRows rows = HiddenRows::kAll) const;

  // Logits [m, V] of hidden-state rows.
  Tensor logits(const float* hidden, int64_t m) const;

 private:
  io::PaliGemmaConfig config_;
  PaliGemmaWeights weights_;
};

}  // namespace pg::model
