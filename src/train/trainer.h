// The training loop: data -> per-example forward/backward -> gradient sum over the step's
// examples (and MPI ranks) -> clipping -> AdamW -> checkpoints, evaluation, progress.
//
// A step takes batch * grad_accum examples from the shuffled stream; example e of the
// step runs on rank e % world_size. Gradients are of the summed token NLL divided by the
// step's total token count (known up front from the tokenised data), so the result is the
// token-mean loss of the whole global batch whatever the number of ranks.
#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "base/status.h"
#include "model/paligemma.h"
#include "text/tokenizer.h"
#include "train/params.h"

namespace pg::train {

struct TrainConfig {
  std::string model_dir, data, out_dir, eval_data;
  std::string mode = "full";
  bool freeze_vision = false;
  int64_t lora_rank = 8;
  float lora_alpha = 16.0f;
  bool save_adapter = false;
  int64_t steps = 100, batch = 1, grad_accum = 1;
  double lr = 1e-4, min_lr = 0.0;
  int64_t warmup_steps = 0;
  double beta1 = 0.9, beta2 = 0.999, eps = 1e-8, weight_decay = 0.0, clip_norm = 1.0;
  uint64_t seed = 0;
  bool shuffle = true;
  int64_t image_size = 0;
  bool recompute = false;
  int64_t save_every = 0, eval_every = 0, eval_max_tokens = 32;
  std::string save_dtype = "auto";
  bool resume = false;
  bool distributed = true;
  // Memory and speed measurements: random bfloat16 weights of the shapes in this
  // config.json instead of model_dir's weights (model_dir still gives the tokenizer);
  // nothing is saved.
  std::string random_weights;
};

struct Progress {
  int64_t step = 0, total_steps = 0;
  double loss = 0, lr = 0, grad_norm = 0, tokens_per_s = 0, elapsed_s = 0, eta_s = 0;
  bool eval = false;
  double eval_loss = 0, eval_exact_match = 0;
  std::string message;
};
using ProgressFn = std::function<void(const Progress&)>;

struct Summary {
  int64_t steps = 0, start_step = 0;
  double first_loss = 0, last_loss = 0;
  double last_eval_loss = -1, last_eval_exact_match = -1;
  int64_t trainable_parameters = 0;
  int world_size = 1, rank = 0;
  double peak_rss_mb = 0;
  std::vector<std::string> warnings;
};

// Runs training as configured. on_progress is called on rank 0 only.
Result<Summary> run_training(const TrainConfig& config, const ProgressFn& on_progress);

// Same, on an already loaded model and tokenizer (tests, random-weight measurements).
// source_dir supplies config.json and tokenizer files for the saved checkpoint ("" with
// out_dir "": nothing is saved).
Result<Summary> run_training_on(const model::PaliGemma& model, const text::Tokenizer& tok,
                                const std::string& source_dir, const TrainConfig& config,
                                const ProgressFn& on_progress,
                                std::unique_ptr<ModelParams>* params_out = nullptr);

// Peak resident set size of this process (VmHWM), in MiB.
double peak_rss_mb();

}  // namespace pg::train
