#include "train/trainer.h"

#include <chrono>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>

#include "base/memory.h"
#include "io/mapped_file.h"
#include "runtime/session.h"
#include "train/adamw.h"
#include "train/checkpoint.h"
#include "train/comm.h"
#include "train/data.h"
#include "train/example.h"

namespace pg::train {
namespace {

namespace fs = std::filesystem;
using nlohmann::json;
using Clock = std::chrono::steady_clock;

double seconds_since(Clock::time_point t0) {
  return std::chrono::duration<double>(Clock::now() - t0).count();
}

// What fixes the trajectory of a run; --resume refuses a state saved under other values.
json settings_of(const TrainConfig& c) {
  return json{{"mode", c.mode},
              {"freeze_vision", c.freeze_vision},
              {"lora_rank", c.lora_rank},
              {"lora_alpha", c.lora_alpha},
              {"image_size", c.image_size},
              {"batch", c.batch},
              {"grad_accum", c.grad_accum},
              {"seed", c.seed},
              {"shuffle", c.shuffle},
              {"lr", c.lr},
              {"min_lr", c.min_lr},
              {"warmup_steps", c.warmup_steps},
              {"beta1", c.beta1},
              {"beta2", c.beta2},
              {"eps", c.eps},
              {"weight_decay", c.weight_decay},
              {"clip_norm", c.clip_norm},
              {"steps", c.steps},
              {"data", c.data},
              {"model_dir", c.model_dir}};
}

// Errors for settings that differ; warnings for the ones a user may change on resume.
Status check_resume_settings(const json& saved, const json& now,
                             std::vector<std::string>& warnings) {
  std::string diffs;
  for (auto it = now.begin(); it != now.end(); ++it) {
    const std::string& key = it.key();
    if (!saved.contains(key) || saved[key] == it.value()) continue;
    const std::string what =
        key + " (saved " + saved[key].dump() + ", now " + it.value().dump() + ")";
    if (key == "steps" || key == "data" || key == "model_dir") {
      warnings.push_back("resuming with a different " + what);
    } else {
      diffs += (diffs.empty() ? "" : ", ") + what;
    }
  }
  if (!diffs.empty())
    return invalid_argument("--resume: the training state was saved with other settings: " + diffs);
  return Status::Ok();
}

std::string trim(const std::string& s) {
  const size_t a = s.find_first_not_of(" \t\r\n");
  if (a == std::string::npos) return "";
  return s.substr(a, s.find_last_not_of(" \t\r\n") - a + 1);
}

// Leftover temporary files of a save that was interrupted.
void remove_stale_temporaries(const std::string& out_dir) {
  std::error_code ec;
  if (!fs::is_directory(out_dir, ec)) return;
  for (const auto& e : fs::directory_iterator(out_dir, ec)) {
    const std::string name = e.path().filename().string();
    for (const char* base : {"model.safetensors.tmp.", "train_state.safetensors.tmp.",
                             "adapter_model.safetensors.tmp."}) {
      if (name.rfind(base, 0) == 0) fs::remove(e.path(), ec);
    }
  }
}

int64_t env_int(const char* name, int64_t fallback) {
  const char* v = std::getenv(name);
  return v != nullptr ? std::strtoll(v, nullptr, 10) : fallback;
}

struct EvalResult {
  double loss = 0, exact_match = 0;
};

// Mean token loss and exact match of greedy answers over a dataset (forward only).
Result<EvalResult> evaluate(const ModelParams& params, Dataset& data, const text::Tokenizer& tok,
                            int64_t max_tokens) {
  double nll = 0;
  int64_t tokens = 0, matches = 0;
  for (int64_t i = 0; i < data.size(); ++i) {
    PG_ASSIGN_OR_RETURN(Example ex, data.get(i));
    const LossSum s = example_loss(params, ex);
    nll += s.nll;
    tokens += s.tokens;
    std::vector<int> ids = greedy_answer(params, ex, max_tokens, tok.eos_id(), tok.vocab_size());
    if (!ids.empty() && ids.back() == tok.eos_id()) ids.pop_back();
    if (trim(tok.decode(ids)) == trim(ex.suffix)) ++matches;
  }
  EvalResult r;
  r.loss = tokens > 0 ? nll / static_cast<double>(tokens) : 0.0;
  r.exact_match = static_cast<double>(matches) / static_cast<double>(data.size());
  return r;
}

Status validate(const TrainConfig& c) {
  if (c.steps < 1) return invalid_argument("--steps must be at least 1");
  if (c.batch < 1) return invalid_argument("--batch must be at least 1");
  if (c.grad_accum < 1) return invalid_argument("--grad-accum must be at least 1");
  if (!(c.lr >= 0) || !(c.min_lr >= 0)) return invalid_argument("learning rates must be >= 0");
  if (!(c.beta1 >= 0 && c.beta1 < 1) || !(c.beta2 >= 0 && c.beta2 < 1)) {
    return invalid_argument("AdamW betas must be in [0, 1)");
  }
  if (!(c.eps > 0)) return invalid_argument("--eps must be > 0");
  if (c.warmup_steps < 0) return invalid_argument("--warmup must be >= 0");
  if (c.resume && c.out_dir.empty()) return invalid_argument("--resume needs --out");
  if (c.out_dir.empty() && c.random_weights.empty() && !c.model_dir.empty()) {
    return invalid_argument("--out is needed (the folder for the fine-tuned checkpoint)");
  }
  if (!c.out_dir.empty() && !c.model_dir.empty()) {
    std::error_code ec;
    if (fs::exists(c.out_dir, ec) && fs::equivalent(c.out_dir, c.model_dir, ec)) {
      return invalid_argument("--out must not be the --model folder (" + c.out_dir + ")");
    }
  }
  return Status::Ok();
}

}  // namespace

double peak_rss_mb() {
  std::ifstream f("/proc/self/status");
  std::string line;
  while (std::getline(f, line)) {
    if (line.rfind("VmHWM:", 0) == 0) return std::strtod(line.c_str() + 6, nullptr) / 1024.0;
  }
  return 0.0;
}

Result<Summary> run_training_on(const model::PaliGemma& model, const text::Tokenizer& tok,
                                const std::string& source_dir, const TrainConfig& c,
                                const ProgressFn& on_progress,
                                std::unique_ptr<ModelParams>* params_out) {
  PG_RETURN_IF_ERROR(validate(c));
  // Every example allocates and frees the same activation buffers: keep freed memory in
  // the heap instead of returning it to the kernel each time (page-fault churn), but at
  // most 256 MiB: a step's peak already holds the weights, optimizer state and saved
  // activations, and inference's 1 GiB added ~0.9 GiB to PaliGemma 3B's peak RSS (measured).
  keep_freed_memory(int64_t{256} << 20);
  Comm& comm = Comm::get(c.distributed);
  const bool lead = comm.rank() == 0;
  auto report = [&](const Progress& p) {
    if (lead && on_progress) on_progress(p);
  };
  Summary summary;
  summary.world_size = comm.size();
  summary.rank = comm.rank();

  PG_ASSIGN_OR_RETURN(TrainMode mode, parse_train_mode(c.mode));
  PG_ASSIGN_OR_RETURN(SaveDType save_dtype, parse_save_dtype(c.save_dtype));
  PG_ASSIGN_OR_RETURN(std::unique_ptr<ModelParams> params,
                      ModelParams::create(model, c.image_size));
  PG_RETURN_IF_ERROR(
      params->select(Selection{mode, c.freeze_vision, c.lora_rank, c.lora_alpha, c.seed}));
  if (c.save_adapter && mode != TrainMode::kLora)
    summary.warnings.push_back("--save-adapter applies to --train lora only");
  ExampleBuilder builder(tok, params->config());
  PG_ASSIGN_OR_RETURN(Dataset data, Dataset::load(c.data, builder));
  std::unique_ptr<Dataset> eval_data;
  if (!c.eval_data.empty()) {
    PG_ASSIGN_OR_RETURN(Dataset d, Dataset::load(c.eval_data, builder));
    eval_data = std::make_unique<Dataset>(std::move(d));
  }
  const std::vector<Param*> trainable = params->trainable();
  for (const Param* p : trainable) summary.trainable_parameters += p->numel();
  AdamW opt(trainable, AdamWConfig{c.beta1, c.beta2, c.eps, c.weight_decay});

  const json settings = settings_of(c);
  int64_t start = 0;
  if (lead && !c.out_dir.empty()) remove_stale_temporaries(c.out_dir);
  if (c.resume) {
    const std::string path = state_path(c.out_dir);
    if (!fs::exists(path)) return not_found("--resume: no training state " + path);
    PG_ASSIGN_OR_RETURN(LoadedState st, load_state(opt, path));
    json saved;
    try {
      saved = json::parse(st.settings);
    } catch (const json::exception& e) {
      return data_loss(path + ": unreadable settings: " + e.what());
    }
    PG_RETURN_IF_ERROR(check_resume_settings(saved, settings, summary.warnings));
    start = st.step;
    report(Progress{.step = start,
                    .total_steps = c.steps,
                    .message = "resumed from step " + std::to_string(start)});
  }
  summary.start_step = start;

  auto save = [&](int64_t step) -> Status {
    if (c.out_dir.empty()) return Status::Ok();
    Status s = Status::Ok();
    if (lead) {
      s = export_checkpoint(*params, source_dir, c.out_dir,
                            ExportOptions{save_dtype, c.save_adapter});
      if (s.ok()) s = save_state(opt, step, settings.dump(), state_path(c.out_dir));
      if (s.ok())
        report(Progress{
            .step = step,
            .total_steps = c.steps,
            .message = "saved checkpoint at step " + std::to_string(step) + " in " + c.out_dir});
    }
    comm.barrier();
    return s;
  };
  auto run_eval = [&](int64_t step) -> Status {
    if (eval_data == nullptr) return Status::Ok();
    if (lead) {
      PG_ASSIGN_OR_RETURN(EvalResult r, evaluate(*params, *eval_data, tok, c.eval_max_tokens));
      summary.last_eval_loss = r.loss;
      summary.last_eval_exact_match = r.exact_match;
      report(Progress{.step = step,
                      .total_steps = c.steps,
                      .eval = true,
                      .eval_loss = r.loss,
                      .eval_exact_match = r.exact_match,
                      .message = {}});
    }
    comm.barrier();
    return Status::Ok();
  };

  Order order(data.size(), c.seed, c.shuffle);
  const Schedule schedule{c.lr, c.min_lr, c.warmup_steps, c.steps};
  const int64_t per_step = c.batch * c.grad_accum;
  const ForwardOptions forward{c.recompute};
  const int64_t crash_after = env_int("PG_TRAIN_CRASH_AFTER_STEP", -1);
  const auto t0 = Clock::now();
  int64_t tokens_done = 0;
  for (int64_t s = start; s < c.steps; ++s) {
    params->zero_grads();
    std::vector<int64_t> idx(static_cast<size_t>(per_step));
    int64_t tokens = 0, sequence_tokens = 0;
    for (int64_t e = 0; e < per_step; ++e) {
      idx[static_cast<size_t>(e)] = order.at(s * per_step + e);
      tokens += data.loss_tokens(idx[static_cast<size_t>(e)]);
      sequence_tokens += data.sequence_tokens(idx[static_cast<size_t>(e)]);
    }
    const float grad_scale = 1.0f / static_cast<float>(tokens);
    double nll = 0.0;
    for (int64_t e = comm.rank(); e < per_step; e += comm.size()) {
      PG_ASSIGN_OR_RETURN(Example ex, data.get(idx[static_cast<size_t>(e)]));
      nll += example_backward(*params, ex, grad_scale, forward).nll;
    }
    for (Param* p : trainable) comm.allreduce_sum(p->grad.data(), p->numel());
    comm.allreduce_sum(&nll, 1);
    const double norm = clip_grad_norm(trainable, c.clip_norm);
    const double lr = schedule.at(s);
    opt.step(lr);

    const double loss = nll / static_cast<double>(tokens);
    if (s == start) summary.first_loss = loss;
    summary.last_loss = loss;
    tokens_done += sequence_tokens;
    const int64_t done = s + 1;
    const double elapsed = seconds_since(t0);
    report(Progress{
        .step = done,
        .total_steps = c.steps,
        .loss = loss,
        .lr = lr,
        .grad_norm = norm,
        .tokens_per_s = elapsed > 0 ? static_cast<double>(tokens_done) / elapsed : 0.0,
        .elapsed_s = elapsed,
        .eta_s = elapsed / static_cast<double>(done - start) * static_cast<double>(c.steps - done),
        .message = {}});
    if (c.save_every > 0 && done % c.save_every == 0 && done < c.steps)
      PG_RETURN_IF_ERROR(save(done));
    if (c.eval_every > 0 && done % c.eval_every == 0 && done < c.steps)
      PG_RETURN_IF_ERROR(run_eval(done));
    if (done == crash_after) std::_Exit(99);  // test hook: a kill between steps
  }
  summary.steps = c.steps;
  PG_RETURN_IF_ERROR(save(c.steps));
  PG_RETURN_IF_ERROR(run_eval(c.steps));
  summary.peak_rss_mb = peak_rss_mb();
  if (params_out != nullptr) *params_out = std::move(params);
  return summary;
}

Result<Summary> run_training(const TrainConfig& config, const ProgressFn& on_progress) {
  if (!config.random_weights.empty()) {
    PG_ASSIGN_OR_RETURN(std::string text, io::read_file(config.random_weights));
    PG_ASSIGN_OR_RETURN(io::PaliGemmaConfig cfg, io::parse_config(text, config.random_weights));
    PG_ASSIGN_OR_RETURN(text::Tokenizer tok,
                        text::Tokenizer::load(config.model_dir + "/tokenizer.model"));
    auto model = model::PaliGemma::from_weights(
        cfg, model::random_weights(cfg, model::WeightType::kBF16, config.seed));
    TrainConfig c = config;
    c.out_dir.clear();  // a measurement: nothing to keep
    return run_training_on(*model, tok, "", c, on_progress);
  }
  std::vector<std::string> warnings;
  PG_ASSIGN_OR_RETURN(auto session, runtime::Session::load(config.model_dir, &warnings));
  auto r = run_training_on(session->model(), session->tokenizer(), config.model_dir, config,
                           on_progress);
  if (!r.ok()) return r;
  r->warnings.insert(r->warnings.begin(), warnings.begin(), warnings.end());
  return r;
}

}  // namespace pg::train
