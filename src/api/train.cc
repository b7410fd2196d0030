// The fine-tuning API (include/paligemma/train.h) over the training layer (src/train).
#include "paligemma/train.h"

#include "model_impl.h"
#include "train/loss.h"
#include "train/trainer.h"

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

Result<LossResult> loss(const Model& model, const std::string& image_path,
                        const std::string& prefix, const std::string& suffix, bool gradients) {
  const pg::runtime::Session& s = *model.impl().session;
  PG_ASSIGN_OR_RETURN(
      pg::train::LossResult r,
      pg::train::compute_loss(s.model(), s.tokenizer(), {image_path}, prefix, suffix, gradients));
  LossResult out;
  out.loss = r.loss;
  out.tokens = r.tokens;
  for (auto& g : r.gradients) out.gradients.push_back(to_public(std::move(g)));
  return out;
}

Result<LossResult> loss(const std::string& model_dir, const std::string& image_path,
                        const std::string& prefix, const std::string& suffix, bool gradients) {
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

Result<TrainSummary> train(const TrainOptions& o, const TrainCallback& on_progress) {
  pg::train::TrainConfig c;
  c.model_dir = o.model_dir;
  c.data = o.data;
  c.out_dir = o.out_dir;
  c.eval_data = o.eval_data;
  c.mode = o.mode;
  c.freeze_vision = o.freeze_vision;
  c.lora_rank = o.lora_rank;
  c.lora_alpha = o.lora_alpha;
  c.save_adapter = o.save_adapter;
  c.steps = o.steps;
  c.batch = o.batch;
  c.grad_accum = o.grad_accum;
  c.lr = o.lr;
  c.min_lr = o.min_lr;
  c.warmup_steps = o.warmup_steps;
  c.beta1 = o.beta1;
  c.beta2 = o.beta2;
  c.eps = o.eps;
  c.weight_decay = o.weight_decay;
  c.clip_norm = o.clip_norm;
  c.seed = o.seed;
  c.shuffle = o.shuffle;
  c.image_size = o.image_size;
  c.recompute = o.recompute;
  c.save_every = o.save_every;
  c.eval_every = o.eval_every;
  c.eval_max_tokens = o.eval_max_tokens;
  c.save_dtype = o.save_dtype;
  c.resume = o.resume;
  c.distributed = o.distributed;
  c.random_weights = o.random_weights;
  pg::train::ProgressFn cb;
  if (on_progress) {
    cb = [&on_progress](const pg::train::Progress& p) {
      TrainProgress q;
      q.step = p.step;
      q.total_steps = p.total_steps;
      q.loss = p.loss;
      q.lr = p.lr;
      q.grad_norm = p.grad_norm;
      q.tokens_per_s = p.tokens_per_s;
      q.elapsed_s = p.elapsed_s;
      q.eta_s = p.eta_s;
      q.eval = p.eval;
      q.eval_loss = p.eval_loss;
      q.eval_exact_match = p.eval_exact_match;
      q.message = p.message;
      on_progress(q);
    };
  }
  PG_ASSIGN_OR_RETURN(pg::train::Summary s, pg::train::run_training(c, cb));
  TrainSummary out;
  out.steps = s.steps;
  out.start_step = s.start_step;
  out.first_loss = s.first_loss;
  out.last_loss = s.last_loss;
  out.last_eval_loss = s.last_eval_loss;
  out.last_eval_exact_match = s.last_eval_exact_match;
  out.trainable_parameters = s.trainable_parameters;
  out.world_size = s.world_size;
  out.rank = s.rank;
  out.peak_rss_mb = s.peak_rss_mb;
  out.warnings = std::move(s.warnings);
  return out;
}

}  // namespace paligemma
