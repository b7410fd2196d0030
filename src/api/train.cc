// The fine-tuning API (include/paligemma/train.h) over the training layer (src/train).
#include "paligemma/train.h"

#include "model_impl.h"
#include "train/loss.h"

namespace paligemma {
namespace {

Gradient to_public(pg::train::NamedGradient&& g) {
  Gradient out;
  out.name = std::move(g.name);
  out.shape = g.grad.shape();
  out.data.assign(g.grad.data(), g.grad.data() + g.grad.numel());
  g.grad = pg::Tensor();
  return out;
}

}  // namespace

Result<LossResult> loss(const Model& model, const std::string& image_path, const std::string& prefix,
                        const std::string& suffix, bool gradients) {
  const pg::runtime::Session& s = *model.impl().session;
  PG_ASSIGN_OR_RETURN(pg::train::LossResult r,
                      pg::train::compute_loss(s.model(), s.tokenizer(), {image_path}, prefix, suffix, gradients));
  LossResult out;
  out.loss = r.loss;
  out.tokens = r.tokens;
  for (auto& g : r.gradients) out.gradients.push_back(to_public(std::move(g)));
  return out;
}

Result<LossResult> loss(const std::string& model_dir, const std::string& image_path, const std::string& prefix,
                        const std::string& suffix, bool gradients) {
  PG_ASSIGN_OR_RETURN(Model model, Model::load(model_dir));
  return loss(model, image_path, prefix, suffix, gradients);
}

Status write_gradients(const std::string& path, const std::vector<Gradient>& gradients) {
  std::vector<pg::train::NamedGradient> g;
  g.reserve(gradients.size());
  for (const Gradient& x : gradients) {
    pg::Tensor t(x.shape);
    if (t.numel() != static_cast<int64_t>(x.data.size())) {
      return pg::invalid_argument("gradient '" + x.name + "': shape and data size disagree");
    }
    std::copy(x.data.begin(), x.data.end(), t.data());
    g.push_back({x.name, std::move(t)});
  }
  return pg::train::write_gradients(path, g);
}

Result<TrainSummary> train(const TrainOptions& options, const TrainCallback& on_progress) {
  return pg::unimplemented("training is not wired yet");
}

}  // namespace paligemma
