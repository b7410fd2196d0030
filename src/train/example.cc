#include "train/example.h"

#include <cmath>
#include <cstring>

#include "train/gemma_train.h"
#include "train/linear.h"
#include "train/siglip_train.h"

namespace pg::train {
namespace {

// HF divides the projector output by hidden_size**0.5 in float32.
float feature_divisor(int64_t H) { return static_cast<float>(std::sqrt(static_cast<double>(H))); }

struct VisionTapes {
  std::vector<SiglipTape> siglip;  // per image (empty when SigLIP is frozen)
  std::vector<Tensor> encoded;     // per image: SigLIP output [N, W] (projector input)
};

// pixels -> image features [n * N, H]: projector output / sqrt(H), image after image.
Tensor image_features(const ModelParams& p, const std::vector<Tensor>& pixels, VisionTapes* tapes,
                      bool recompute) {
  const int64_t N = p.config().num_image_tokens(), H = p.config().text.hidden_size;
  Tensor features({static_cast<int64_t>(pixels.size()) * N, H});
  const float div = feature_divisor(H);
  const bool vision_trains = tapes != nullptr && p.vision_trains();
  if (tapes != nullptr) tapes->siglip.resize(vision_trains ? pixels.size() : 0);
  for (size_t i = 0; i < pixels.size(); ++i) {
    SiglipTape* t = nullptr;
    if (vision_trains) {
      t = &tapes->siglip[i];
      t->recompute = recompute;
    }
    Tensor encoded = siglip_forward(p, pixels[i], t);
    Tensor projected({N, H});
    linear_forward(p.projector, encoded.data(), N, projected.data());
    float* dst = features.row(static_cast<int64_t>(i) * N);
    for (int64_t j = 0; j < N * H; ++j) dst[j] = projected.data()[j] / div;
    if (tapes != nullptr) tapes->encoded.push_back(std::move(encoded));
  }
  return features;
}

// dfeatures: [n * N, H] -> projector and SigLIP gradients.
void image_features_backward(ModelParams& p, VisionTapes& tapes, const Tensor& dfeatures) {
  const int64_t N = p.config().num_image_tokens(), H = p.config().text.hidden_size;
  const int64_t W = p.config().vision.hidden_size;
  const float div = feature_divisor(H);
  const bool vision_trains = p.vision_trains();
  for (size_t i = 0; i < tapes.encoded.size(); ++i) {
    Tensor dproj({N, H});
    const float* g = dfeatures.row(static_cast<int64_t>(i) * N);
    for (int64_t j = 0; j < N * H; ++j) dproj.data()[j] = g[j] / div;
    Tensor dsig;
    if (vision_trains) dsig = Tensor({N, W});
    linear_backward(p.projector, tapes.encoded[i].data(), dproj.data(), N,
                    vision_trains ? dsig.data() : nullptr, false);
    if (vision_trains) siglip_backward(p, tapes.siglip[i], dsig);
  }
}

int image_token(const ModelParams& p) { return static_cast<int>(p.config().image_token_index); }

}  // namespace

LossSum example_backward(ModelParams& p, const Example& ex, float grad_scale,
                         const ForwardOptions& o) {
  const bool vision_path = !ex.pixels.empty() && (p.projector_trains() || p.vision_trains());
  VisionTapes vt;
  Tensor features;
  if (!ex.pixels.empty())
    features = image_features(p, ex.pixels, vision_path ? &vt : nullptr, o.recompute);
  Tensor x = embed_forward(p, ex.ids, image_token(p), ex.pixels.empty() ? nullptr : &features);
  GemmaTape tape;
  tape.recompute = o.recompute;
  Tensor hidden = gemma_forward_train(p, std::move(x), ex.prefix_len, &tape);
  Tensor dh(hidden.shape());
  const LossSum loss = lm_loss(p, hidden, ex.ids, ex.prefix_len - 1, grad_scale, &dh);
  hidden = Tensor();
  const bool need_dx = vision_path || p.embedding_trains();
  Tensor dx = gemma_backward_train(p, tape, dh, need_dx);
  if (!need_dx) return loss;
  Tensor dfeatures;
  if (vision_path) dfeatures = Tensor(features.shape());
  const int64_t image_rows = ex.pixels.empty() ? 0 : features.dim(0);
  embed_backward(p, ex.ids, image_token(p), image_rows, dx, vision_path ? &dfeatures : nullptr);
  if (vision_path) image_features_backward(p, vt, dfeatures);
  return loss;
}

LossSum example_loss(const ModelParams& p, const Example& ex) {
  Tensor features;
  if (!ex.pixels.empty()) features = image_features(p, ex.pixels, nullptr, false);
  Tensor x = embed_forward(p, ex.ids, image_token(p), ex.pixels.empty() ? nullptr : &features);
  Tensor hidden = gemma_forward_train(p, std::move(x), ex.prefix_len, nullptr);
  // lm_loss only writes gradients when dhidden is non-null; p is not modified.
  return lm_loss(const_cast<ModelParams&>(p), hidden, ex.ids, ex.prefix_len - 1, 0.0f, nullptr);
}

std::vector<int> greedy_answer(const ModelParams& p, const Example& ex, int64_t max_tokens,
                               int eos_id, int vocab_limit) {
  Tensor features;
  if (!ex.pixels.empty()) features = image_features(p, ex.pixels, nullptr, false);
  std::vector<int> ids(ex.ids.begin(), ex.ids.begin() + ex.prefix_len);
  std::vector<int> out;
  const int64_t context = p.config().text.max_position_embeddings;
  while (static_cast<int64_t>(out.size()) < max_tokens &&
         static_cast<int64_t>(ids.size()) < context) {
    Tensor x = embed_forward(p, ids, image_token(p), ex.pixels.empty() ? nullptr : &features);
    Tensor hidden = gemma_forward_train(p, std::move(x), ex.prefix_len, nullptr);
    Tensor logits = lm_logits(p, hidden.row(hidden.dim(0) - 1), 1);
    const int64_t limit = std::min<int64_t>(vocab_limit, logits.dim(1));
    int best = 0;
    for (int64_t v = 1; v < limit; ++v) {
      if (logits.data()[v] > logits.data()[best]) best = static_cast<int>(v);
    }
    out.push_back(best);
    if (best == eos_id) break;
    ids.push_back(best);
  }
  return out;
}

}  // namespace pg::train
