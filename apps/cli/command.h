// The CLI's commands. Each command file adds its subcommands to the app and registers a
// runner that main() calls after parsing. Commands use only the public API.
#pragma once

#include <CLI/CLI.hpp>
#include <functional>
#include <map>
#include <string>

#include "paligemma/paligemma.h"

namespace cli {

using Runner = std::function<int()>;
using Runners = std::map<std::string, Runner>;  // subcommand name -> runner

// Prints "paligemma: error: MESSAGE" to stderr and returns exit code 1.
int fail(const std::string& message);
void warn(const std::string& message);

// --model and --threads, shared by every command that loads a checkpoint.
struct ModelFlags {
  std::string model;
  int threads = 0;
  std::string dtype = "auto";
};
void add_model_flags(CLI::App* cmd, ModelFlags& flags);
// Sets the thread count, loads the model and prints its warnings; *load_s gets the time.
paligemma::Result<paligemma::Model> load_model(const ModelFlags& flags, double* load_s);

void register_generate(CLI::App& app, Runners& runners);  // generate, info  (generate.cc)
void register_tasks(CLI::App& app, Runners& runners);  // caption, ask, ocr, detect, segment, parse,
                                                       // decode-mask, run-batch (tasks.cc)
void register_bench(CLI::App& app, Runners& runners);  // bench, quantize (bench.cc)
void register_serve(CLI::App& app, Runners& runners);  // serve (serve.cc)
void register_train(CLI::App& app, Runners& runners);  // train, loss (train.cc)

}  // namespace cli
