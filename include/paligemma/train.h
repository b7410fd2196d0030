// Fine-tuning: the prefix-LM loss with exact gradients, and a training loop (AdamW,
// warm-up + cosine schedule, clipping, accumulation, LoRA / attention-only / full,
// checkpoints that this engine and Hugging Face load, resume, MPI data parallelism).
//
//   auto r = paligemma::loss("tiny-pg1", "cat.png", "caption en", "a cat", true);
//   // r->loss, r->tokens, r->gradients[i].name / .shape / .data
//
//   paligemma::TrainOptions o;
//   o.model_dir = "paligemma-3b-pt-224"; o.data = "train.jsonl"; o.out_dir = "ft";
//   o.mode = "lora"; o.steps = 200;
//   auto summary = paligemma::train(o, [](const paligemma::TrainProgress& p) { ... });
#pragma once

#include <cstdint>
#include <functional>
#include <string>
#include <vector>

#include "paligemma/paligemma.h"

namespace paligemma {

struct Gradient {
  std::string name;  // the parameter's key in the checkpoint
  std::vector<int64_t> shape;
  std::vector<float> data;
};

struct LossResult {
  double loss = 0.0;                // mean cross-entropy of the suffix tokens and EOS
  int64_t tokens = 0;               // how many tokens that mean is over
  std::vector<Gradient> gradients;  // every parameter (when asked for); the tied
                                    // embedding's includes the LM head's
};

// The loss of one example: the image's tokens, BOS, prefix + "\n" (attended
// bidirectionally), then the suffix and EOS (causally), predicting suffix and EOS.
Result<LossResult> loss(const Model& model, const std::string& image_path,
                        const std::string& prefix, const std::string& suffix,
                        bool gradients = false);
Result<LossResult> loss(const std::string& model_dir, const std::string& image_path,
                        const std::string& prefix, const std::string& suffix,
                        bool gradients = false);
// Writes grad.<name> float32 tensors (safetensors).
Status write_gradients(const std::string& path, const std::vector<Gradient>& gradients);

struct TrainOptions {
  std::string model_dir;  // checkpoint to start from
  std::string data;       // JSONL: {"image": path, "prefix": ..., "suffix": ...} per line
  std::string out_dir;    // checkpoint written here (HF layout) with train_state.safetensors
  std::string eval_data;  // optional JSONL evaluated every eval_every steps

  std::string mode = "full";   // "full", "attention" (decoder q/k/v/o) or "lora"
  bool freeze_vision = false;  // SigLIP frozen (full mode)
  int64_t lora_rank = 8;
  float lora_alpha = 16.0f;
  bool save_adapter = false;  // LoRA: write the PEFT adapter instead of merging it

  int64_t steps = 100;       // optimiser steps
  int64_t batch = 1;         // examples per micro-batch (global, over all MPI ranks)
  int64_t grad_accum = 1;    // micro-batches per optimiser step
  double lr = 1e-4;          // peak learning rate
  double min_lr = 0.0;       // end of the cosine decay
  int64_t warmup_steps = 0;  // linear warm-up from 0
  double beta1 = 0.9, beta2 = 0.999, eps = 1e-8;
  double weight_decay = 0.0;  // decoupled (AdamW), on matrices only
  double clip_norm = 1.0;     // global gradient norm clipping (0: off)
  uint64_t seed = 0;          // data order and LoRA initialisation
  bool shuffle = true;        // reshuffle every epoch

  int64_t image_size = 0;  // > 0: train at this resolution (position embeddings resampled)
  bool recompute = false;  // activation recomputation (keep only layer inputs)
  int64_t save_every = 0;  // checkpoint every N steps (0: at the end only)
  int64_t eval_every = 0;  // evaluate every N steps (0: at the end only, if eval_data)
  int64_t eval_max_tokens = 32;
  std::string save_dtype =
      "auto";               // "auto": trained tensors float32, frozen as stored; "f32"; "bf16"
  bool resume = false;      // continue from out_dir/train_state.safetensors
  bool distributed = true;  // use MPI when launched by mpirun
  // Measurements (memory, speed): random bfloat16 weights with the shapes of this
  // config.json instead of model_dir's weights (model_dir gives the tokenizer); nothing
  // is saved.
  std::string random_weights;
};

struct TrainProgress {
  int64_t step = 0;  // optimiser steps done
  int64_t total_steps = 0;
  double loss = 0.0;  // mean loss of this step's batch
  double lr = 0.0;
  double grad_norm = 0.0;  // before clipping
  double tokens_per_s =
      0.0;  // sequence tokens (image + text) through forward and backward per second, all ranks
  double elapsed_s = 0.0;
  double eta_s = 0.0;
  bool eval = false;  // an evaluation result (eval_loss, eval_exact_match)
  double eval_loss = 0.0;
  double eval_exact_match = 0.0;
  std::string message;  // e.g. "saved checkpoint at step 100"
};
using TrainCallback = std::function<void(const TrainProgress&)>;

struct TrainSummary {
  int64_t steps = 0;
  int64_t start_step = 0;  // > 0 when resumed
  double first_loss = 0.0;
  double last_loss = 0.0;
  double last_eval_loss = -1.0;
  double last_eval_exact_match = -1.0;
  int64_t trainable_parameters = 0;
  int world_size = 1;
  int rank = 0;
  double peak_rss_mb = 0.0;
  std::vector<std::string> warnings;
};

// Runs the training loop; rank 0 reports progress and writes checkpoints.
Result<TrainSummary> train(const TrainOptions& options, const TrainCallback& on_progress = nullptr);

}  // namespace paligemma
