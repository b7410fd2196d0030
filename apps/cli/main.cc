// build/paligemma: the command-line face of the engine. Uses only the public API.
#include <cstdio>
#include <exception>
#include <new>

#include "command.h"

namespace cli {

int fail(const std::string& message) {
  std::fprintf(stderr, "paligemma: error: %s\n", message.c_str());
  return 1;
}

void warn(const std::string& message) {
  std::fprintf(stderr, "paligemma: warning: %s\n", message.c_str());
}

void add_model_flags(CLI::App* cmd, ModelFlags& f) {
  cmd->add_option("--model", f.model,
                  "Checkpoint folder (config.json, *.safetensors, tokenizer.model)")
      ->required();
  cmd->add_option("--threads", f.threads, "Threads (default: all cores)")
      ->check(CLI::NonNegativeNumber);
  cmd->add_option("--dtype", f.dtype,
                  "Weights while running: auto (as stored, memory-mapped), f32, bf16, int8, q4 "
                  "or w8a8 (int8/q4: decoder quantized in blocks of 32, vision in int8; w8a8: "
                  "int8 with one scale per output channel, prefill as int8 x int8 on AMX)")
      ->check(CLI::IsMember({"auto", "f32", "bf16", "int8", "q4", "w8a8"}));
}

paligemma::Result<paligemma::Model> load_model(const ModelFlags& f, double* load_s) {
  paligemma::set_threads(f.threads);
  const auto t0 = std::chrono::steady_clock::now();
  paligemma::LoadOptions options;
  options.dtype = f.dtype;
  auto model = paligemma::Model::load(f.model, options);
  *load_s = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  if (model.ok()) {
    for (const std::string& w : model->warnings()) warn(w);
  }
  return model;
}

namespace {

int run(int argc, char** argv) {
  CLI::App app{"PaliGemma and PaliGemma 2 on the CPU: generation, tasks, benchmarks, serving"};
  app.require_subcommand(1);
  Runners runners;
  register_generate(app, runners);
  register_tasks(app, runners);
  register_bench(app, runners);
  register_serve(app, runners);
  register_train(app, runners);
  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    const int code = app.exit(e);
    return code == 0 ? 0 : 2;
  }
  const std::string name = app.get_subcommands().front()->get_name();
  auto it = runners.find(name);
  if (it == runners.end()) return fail("command '" + name + "' has no runner");
  return it->second();
}

}  // namespace
}  // namespace cli

int main(int argc, char** argv) {
  try {
    return cli::run(argc, argv);
  } catch (const std::bad_alloc&) {
    return cli::fail("out of memory");
  } catch (const std::exception& e) {
    return cli::fail(std::string("unexpected: ") + e.what());
  }
}
