#include "train/loss.h"

#include "io/safetensors.h"
#include "train/data.h"
#include "train/example.h"
#include "train/params.h"

namespace pg::train {

Result<LossResult> compute_loss(const model::PaliGemma& model, const text::Tokenizer& tok,
                                const std::vector<std::string>& images, const std::string& prefix,
                                const std::string& suffix, bool gradients) {
  PG_ASSIGN_OR_RETURN(auto params, ModelParams::create(model, 0));
  ExampleBuilder builder(tok, params->config());
  PG_ASSIGN_OR_RETURN(Example ex, builder.build(images, prefix, suffix));
  LossResult r;
  r.tokens = ex.loss_tokens();
  if (!gradients) {
    r.loss = example_loss(*params, ex).nll / static_cast<double>(r.tokens);
    return r;
  }
  Selection all;
  all.mode = TrainMode::kFull;
  PG_RETURN_IF_ERROR(params->select(all));
  const LossSum s =
      example_backward(*params, ex, 1.0f / static_cast<float>(r.tokens), ForwardOptions());
  r.loss = s.nll / static_cast<double>(r.tokens);
  for (Param* p : params->all()) r.gradients.push_back({p->stored_name, std::move(p->grad)});
  return r;
}

Status write_gradients(const std::string& path, const std::vector<NamedGradient>& grads) {
  std::vector<io::TensorToWrite> t;
  for (const NamedGradient& g : grads)
    t.push_back({"grad." + g.name, DType::kF32, g.grad.shape(), g.grad.data()});
  return io::write_safetensors(path, t);
}

}  // namespace pg::train
