// build/paligemma train | loss
#include "paligemma/train.h"

#include <unistd.h>

#include <cmath>
#include <cstdio>
#include <memory>
#include <nlohmann/json.hpp>
#include <string>

#include "command.h"

namespace cli {
namespace {

using nlohmann::json;

struct LossFlags {
  ModelFlags model;
  std::string image, prefix, suffix, grads_out;
  bool json = false;
};

int run_loss(const LossFlags& f) {
  double load_s = 0;
  auto model = load_model(f.model, &load_s);
  if (!model.ok()) return fail(model.status().message());
  auto r = paligemma::loss(*model, f.image, f.prefix, f.suffix, !f.grads_out.empty());
  if (!r.ok()) return fail(r.status().message());
  if (!f.grads_out.empty()) {
    auto st = paligemma::write_gradients(f.grads_out, r->gradients);
    if (!st.ok()) return fail(st.message());
  }
  if (f.json) {
    std::printf("%s\n", json{{"loss", r->loss}, {"tokens", r->tokens}}.dump().c_str());
  } else {
    std::printf("loss %.6f over %lld tokens\n", r->loss, static_cast<long long>(r->tokens));
  }
  return 0;
}

std::string format_duration(double s) {
  if (!std::isfinite(s) || s < 0) return "?";
  const long long t = static_cast<long long>(s + 0.5);
  char buf[32];
  if (t >= 3600) {
    std::snprintf(buf, sizeof(buf), "%lldh%02lldm", t / 3600, (t / 60) % 60);
  } else {
    std::snprintf(buf, sizeof(buf), "%lldm%02llds", t / 60, t % 60);
  }
  return buf;
}

// One progress line: a bar on a terminal (redrawn in place), plain lines otherwise.
class ProgressPrinter {
 public:
  explicit ProgressPrinter(int64_t log_every)
      : tty_(isatty(STDERR_FILENO) != 0), log_every_(log_every) {}
  void operator()(const paligemma::TrainProgress& p) {
    if (!p.message.empty()) {
      end_line();
      std::fprintf(stderr, "[train] %s\n", p.message.c_str());
      return;
    }
    if (p.eval) {
      end_line();
      std::fprintf(stderr, "[eval] step %lld: loss %.4f, exact match %.1f%%\n",
                   static_cast<long long>(p.step), p.eval_loss, 100.0 * p.eval_exact_match);
      return;
    }
    const bool last = p.step == p.total_steps;
    if (!tty_ && !last && (log_every_ <= 0 || p.step % log_every_ != 0)) return;
    constexpr int kWidth = 24;
    const int filled =
        p.total_steps > 0 ? static_cast<int>(kWidth * p.step / p.total_steps) : kWidth;
    std::string bar(static_cast<size_t>(filled), '#');
    bar.append(static_cast<size_t>(kWidth - filled), '.');
    std::fprintf(stderr, "%sstep %lld/%lld [%s] loss %.4f | lr %.2e | %.0f tok/s | ETA %s%s",
                 tty_ ? "\r" : "", static_cast<long long>(p.step),
                 static_cast<long long>(p.total_steps), bar.c_str(), p.loss, p.lr, p.tokens_per_s,
                 format_duration(p.eta_s).c_str(), tty_ ? "\033[K" : "\n");
    open_ = tty_;
    if (last) end_line();
  }
  void end_line() {
    if (open_) std::fprintf(stderr, "\n");
    open_ = false;
  }

 private:
  bool tty_;
  int64_t log_every_;
  bool open_ = false;
};

struct TrainFlags {
  paligemma::TrainOptions o;
  int threads = 0;
  int64_t log_every = 10;
  bool json = false;
};

int run_train(const TrainFlags& f) {
  paligemma::set_threads(f.threads);
  auto printer = std::make_shared<ProgressPrinter>(f.log_every);
  auto summary =
      paligemma::train(f.o, [printer](const paligemma::TrainProgress& p) { (*printer)(p); });
  printer->end_line();
  if (!summary.ok()) return fail(summary.status().message());
  for (const std::string& w : summary->warnings) warn(w);
  if (summary->rank != 0) return 0;
  if (f.json) {
    json j = {{"steps", summary->steps},
              {"start_step", summary->start_step},
              {"first_loss", summary->first_loss},
              {"last_loss", summary->last_loss},
              {"trainable_parameters", summary->trainable_parameters},
              {"world_size", summary->world_size},
              {"peak_rss_mb", summary->peak_rss_mb},
              {"out", f.o.out_dir}};
    if (summary->last_eval_loss >= 0) {
      j["eval_loss"] = summary->last_eval_loss;
      j["eval_exact_match"] = summary->last_eval_exact_match;
    }
    std::printf("%s\n", j.dump().c_str());
  } else {
    std::fprintf(stderr,
                 "[train] done: %lld steps, loss %.4f -> %.4f, %lld trainable parameters, peak RSS "
                 "%.0f MB%s%s\n",
                 static_cast<long long>(summary->steps), summary->first_loss, summary->last_loss,
                 static_cast<long long>(summary->trainable_parameters), summary->peak_rss_mb,
                 f.o.random_weights.empty() ? "; checkpoint in " : "",
                 f.o.random_weights.empty() ? f.o.out_dir.c_str() : "");
  }
  return 0;
}

}  // namespace

void register_train(CLI::App& app, Runners& runners) {
  auto lf = std::make_shared<LossFlags>();
  CLI::App* loss =
      app.add_subcommand("loss", "Prefix-LM loss of one example, and optionally every gradient");
  add_model_flags(loss, lf->model);
  loss->add_option("--image", lf->image, "Image file (JPEG or PNG)")->required();
  loss->add_option("--prefix", lf->prefix, "Prompt (the prefix), e.g. \"caption en\"")->required();
  loss->add_option("--suffix", lf->suffix, "Target text (the suffix); EOS is appended")->required();
  loss->add_flag("--json", lf->json, "Print {\"loss\": L, \"tokens\": N}");
  loss->add_option(
      "--grads-out", lf->grads_out,
      "Write grad.<parameter name> (float32) for every parameter to this .safetensors file");
  runners["loss"] = [lf] { return run_loss(*lf); };

  auto tf = std::make_shared<TrainFlags>();
  paligemma::TrainOptions& o = tf->o;
  CLI::App* t = app.add_subcommand("train", "Fine-tune a checkpoint on a JSONL dataset (AdamW)");
  t->option_defaults()->multi_option_policy(CLI::MultiOptionPolicy::TakeLast);  // a later flag wins
  t->add_option("--model", o.model_dir, "Checkpoint folder to start from")->required();
  t->add_option("--data", o.data,
                "JSONL file: {\"image\": path, \"prefix\": ..., \"suffix\": ...} per line")
      ->required();
  t->add_option("--out", o.out_dir, "Folder for the fine-tuned checkpoint and training state");
  t->add_option("--steps", o.steps, "Optimiser steps (default 100)")->check(CLI::PositiveNumber);
  t->add_option("--batch", o.batch, "Examples per micro-batch, over all MPI ranks (default 1)")
      ->check(CLI::PositiveNumber);
  t->add_option("--grad-accum", o.grad_accum, "Micro-batches per optimiser step (default 1)")
      ->check(CLI::PositiveNumber);
  t->add_option("--lr", o.lr, "Peak learning rate (default 1e-4)")->check(CLI::NonNegativeNumber);
  t->add_option("--min-lr", o.min_lr, "Learning rate at the end of the cosine decay (default 0)")
      ->check(CLI::NonNegativeNumber);
  t->add_option("--warmup", o.warmup_steps, "Linear warm-up steps (default 0)")
      ->check(CLI::NonNegativeNumber);
  t->add_option("--beta1", o.beta1, "AdamW beta1 (default 0.9)")->check(CLI::Range(0.0, 1.0));
  t->add_option("--beta2", o.beta2, "AdamW beta2 (default 0.999)")->check(CLI::Range(0.0, 1.0));
  t->add_option("--eps", o.eps, "AdamW epsilon (default 1e-8)")->check(CLI::PositiveNumber);
  t->add_option("--weight-decay", o.weight_decay, "Decoupled weight decay on matrices (default 0)")
      ->check(CLI::NonNegativeNumber);
  t->add_option("--clip-norm", o.clip_norm,
                "Clip the global gradient norm to this (0: off; default 1)")
      ->check(CLI::NonNegativeNumber);
  t->add_option("--seed", o.seed, "Seed of the data order and LoRA initialisation (default 0)");
  t->add_flag("!--no-shuffle", o.shuffle, "Visit examples in file order every epoch");
  t->add_option("--train", o.mode,
                "What to train: full, attention (decoder q/k/v/o) or lora (default full)")
      ->check(CLI::IsMember({"full", "attention", "lora"}));
  t->add_flag("--freeze-vision", o.freeze_vision, "Keep SigLIP frozen");
  t->add_option("--lora-rank", o.lora_rank, "LoRA rank (default 8)")->check(CLI::PositiveNumber);
  t->add_option("--lora-alpha", o.lora_alpha,
                "LoRA alpha; the update is scaled by alpha/rank (default 16)")
      ->check(CLI::PositiveNumber);
  t->add_flag("--save-adapter", o.save_adapter,
              "LoRA: save the adapter (PEFT layout) instead of merging it");
  t->add_option(
       "--image-size", o.image_size,
       "Train at this resolution (e.g. 448, 896): position embeddings resampled, config updated")
      ->check(CLI::PositiveNumber);
  t->add_flag("--recompute", o.recompute,
              "Recompute activations in the backward pass (less memory)");
  t->add_option("--save-every", o.save_every, "Checkpoint every N steps (default: at the end only)")
      ->check(CLI::NonNegativeNumber);
  t->add_option("--save-dtype", o.save_dtype,
                "auto (trained tensors float32, frozen ones as stored), f32 or bf16 (default auto)")
      ->check(CLI::IsMember({"auto", "f32", "bf16"}));
  t->add_flag("--resume", o.resume, "Continue from the training state in --out");
  t->add_option("--eval-data", o.eval_data,
                "JSONL evaluated every --eval-every steps (loss, exact match)");
  t->add_option("--eval-every", o.eval_every,
                "Evaluation interval in steps (default: at the end only)")
      ->check(CLI::NonNegativeNumber);
  t->add_option("--eval-max-tokens", o.eval_max_tokens,
                "Longest greedy answer in evaluation (default 32)")
      ->check(CLI::PositiveNumber);
  t->add_option("--threads", tf->threads, "Threads (default: all cores)")
      ->check(CLI::NonNegativeNumber);
  t->add_option("--log-every", tf->log_every,
                "Without a terminal, print progress every N steps (0: the last only; default 10)")
      ->check(CLI::NonNegativeNumber);
  t->add_flag("--json", tf->json, "Print a JSON summary on stdout at the end");
  t->add_option(
      "--random-weights", o.random_weights,
      "Measure memory and speed on random bf16 weights of this config.json's sizes (--model gives "
      "the tokenizer; nothing is saved)");
  runners["train"] = [tf] { return run_train(*tf); };
}

}  // namespace cli
