// build/paligemma generate | info
#include <chrono>
#include <cstdio>
#include <memory>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "command.h"

namespace cli {
namespace {

using nlohmann::json;

struct GenerateFlags {
  ModelFlags model;
  std::vector<std::string> images;
  std::string prompt;
  int64_t max_tokens = 32;
  bool greedy = false;
  float temperature = 1.0f;
  int top_k = 0;
  float top_p = 1.0f;
  uint64_t seed = 0;
  bool json = false;
  std::string logits_out;
  std::string dump_dir;
};

int run_generate(const GenerateFlags& f, CLI::App* cmd) {
  double load_s = 0;
  auto model = load_model(f.model, &load_s);
  if (!model.ok()) return fail(model.status().message());
  if (!f.dump_dir.empty()) paligemma::set_dump_dir(f.dump_dir);

  paligemma::GenerateOptions o;
  o.max_tokens = f.max_tokens;
  const bool sampling = cmd->count("--temperature") + cmd->count("--top-k") +
                            cmd->count("--top-p") + cmd->count("--seed") >
                        0;
  o.greedy = !sampling || f.temperature == 0.0f;
  o.temperature = f.temperature;
  o.top_k = f.top_k;
  o.top_p = f.top_p;
  o.seed = f.seed;
  o.keep_logits = !f.logits_out.empty();

  paligemma::TextCallback stream;
  if (!f.json) {
    stream = [](std::string_view piece) {
      std::fwrite(piece.data(), 1, piece.size(), stdout);
      std::fflush(stdout);
      return true;
    };
  }
  auto out = model->generate(f.images, f.prompt, o, stream);
  if (!out.ok()) return fail(out.status().message());

  if (!f.logits_out.empty()) {
    const int64_t steps = static_cast<int64_t>(out->ids.size());
    auto st = paligemma::write_npy(f.logits_out, out->logits.data(), {steps, out->vocab_size});
    if (!st.ok()) return fail(st.message());
  }
  const paligemma::Timings& tm = out->timings;
  const double decode_steps = static_cast<double>(out->ids.size()) - 1.0;
  const double decode_tok_s =
      decode_steps > 0 && tm.decode_s > 0 ? decode_steps / tm.decode_s : 0.0;
  if (f.json) {
    json j;
    j["ids"] = out->ids;
    j["text"] = out->text;
    j["prompt_tokens"] = out->prompt_tokens;
    j["stop_reason"] = out->stop_reason;
    j["timings"] = {{"load_s", load_s},          {"vision_s", tm.vision_s},
                    {"prefill_s", tm.prefill_s}, {"ttft_s", tm.ttft_s},
                    {"decode_s", tm.decode_s},   {"decode_tok_s", decode_tok_s}};
    std::printf("%s\n", j.dump(-1, ' ', false, json::error_handler_t::replace).c_str());
  } else {
    std::printf("\n");
    std::fprintf(stderr, "[%zu tokens, %s; load %.2f s, first token %.3f s, %.1f tok/s]\n",
                 out->ids.size(), out->stop_reason.c_str(), load_s, tm.ttft_s, decode_tok_s);
  }
  return 0;
}

int run_info(const ModelFlags& f) {
  double load_s = 0;
  auto model = load_model(f, &load_s);
  if (!model.ok()) return fail(model.status().message());
  const paligemma::ModelInfo& i = model->info();
  json j = {{"decoder", i.decoder},
            {"image_size", i.image_size},
            {"image_tokens", i.image_tokens},
            {"vocab_size", i.vocab_size},
            {"tokenizer_vocab", i.tokenizer_vocab},
            {"text_hidden_size", i.text_hidden_size},
            {"context_length", i.context_length},
            {"num_parameters", i.num_parameters},
            {"load_s", load_s}};
  std::printf("%s\n", j.dump(2).c_str());
  return 0;
}

}  // namespace

void register_generate(CLI::App& app, Runners& runners) {
  auto f = std::make_shared<GenerateFlags>();
  CLI::App* cmd = app.add_subcommand("generate", "Generate text from images and a prompt");
  add_model_flags(cmd, f->model);
  cmd->add_option("--image", f->images,
                  "Image file (JPEG or PNG); repeat for several images, in order")
      ->required();
  cmd->add_option("--prompt", f->prompt, "Prompt, e.g. \"caption en\", \"detect cat\"")->required();
  cmd->add_option("--max-tokens", f->max_tokens, "Most tokens to generate (default 32)")
      ->check(CLI::PositiveNumber);
  auto* greedy = cmd->add_flag("--greedy", f->greedy, "Pick the most likely token (the default)");
  auto* t =
      cmd->add_option("--temperature", f->temperature, "Sample with this temperature (0: greedy)")
          ->check(CLI::NonNegativeNumber);
  auto* k = cmd->add_option("--top-k", f->top_k, "Sample among the k most likely tokens (0: all)")
                ->check(CLI::NonNegativeNumber);
  auto* p = cmd->add_option("--top-p", f->top_p, "Sample from the smallest set of probability >= p")
                ->check(CLI::Range(0.0f, 1.0f));
  auto* s = cmd->add_option("--seed", f->seed, "Random seed for sampling (default 0)");
  greedy->excludes(t)->excludes(k)->excludes(p)->excludes(s);
  cmd->add_flag("--json", f->json, "Print one JSON object: ids, text, timings");
  cmd->add_option("--logits-out", f->logits_out,
                  "Write the logits that chose each token as float32 .npy [steps, vocab_size]");
  cmd->add_option("--dump-dir", f->dump_dir, "Write every named intermediate tensor here as .npy");
  runners["generate"] = [f, cmd] { return run_generate(*f, cmd); };

  auto info_flags = std::make_shared<ModelFlags>();
  CLI::App* info = app.add_subcommand("info", "Load a checkpoint and print what it is, as JSON");
  add_model_flags(info, *info_flags);
  runners["info"] = [info_flags] { return run_info(*info_flags); };
}

}  // namespace cli
