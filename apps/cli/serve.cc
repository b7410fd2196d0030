// build/paligemma serve: the HTTP API (OpenAI chat completions, task endpoints, /health,
// /metrics) and the web page, from apps/server.
#include <pthread.h>
#include <signal.h>

#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <memory>
#include <nlohmann/json.hpp>
#include <string>
#include <thread>

#include "command.h"
#include "server.h"

namespace cli {
namespace {

struct ServeFlags {
  std::string model;
  pgserve::ServerOptions server;
  std::string model_id;
  size_t max_body_mb = 20;
  bool quiet = false;
};

// Writes one JSON line to stderr, like the per-request log.
void log_line(const nlohmann::json& j) {
  std::fprintf(stderr, "%s\n",
               j.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace).c_str());
}

int run_serve(ServeFlags& f) {
  pgserve::ServerOptions o = f.server;
  o.max_body_bytes = f.max_body_mb << 20;
  o.log_requests = !f.quiet;
  if (o.api_key.empty()) {
    if (const char* k = std::getenv("PALIGEMMA_API_KEY")) o.api_key = k;
  }
  o.model_id = f.model_id;
  if (o.model_id.empty()) {
    std::filesystem::path p = std::filesystem::path(f.model).lexically_normal();
    if (p.filename().empty()) p = p.parent_path();
    o.model_id = p.filename().string();
  }
  if (!o.vae_path.empty() && !std::filesystem::exists(o.vae_path)) {
    return fail("--vae: no file " + o.vae_path);
  }

  // SIGINT and SIGTERM go to one thread that stops the server: blocked here, before any
  // other thread starts, so every thread inherits the mask.
  sigset_t signals;
  sigemptyset(&signals);
  sigaddset(&signals, SIGINT);
  sigaddset(&signals, SIGTERM);
  pthread_sigmask(SIG_BLOCK, &signals, nullptr);

  pgserve::Server server(o);
  std::string error;
  if (!server.bind(&error)) return fail(error);
  const std::string url = "http://" +
                          (o.host.find(':') != std::string::npos ? "[" + o.host + "]" : o.host) +
                          ":" + std::to_string(server.port());
  log_line({{"msg", "listening"}, {"url", url}, {"port", server.port()}, {"model", f.model}});
  if (o.host != "127.0.0.1" && o.host != "::1" && o.host != "localhost" && o.api_key.empty()) {
    warn("listening on " + o.host +
         " without --api-key: anyone who can reach this port can use the model");
  }

  std::thread listener([&server] { server.run(); });
  std::thread([&server, signals] {
    int sig = 0;
    sigwait(&signals, &sig);
    log_line({{"msg", "stopping"}, {"signal", sig}});
    server.stop();
  }).detach();

  const auto t0 = std::chrono::steady_clock::now();
  if (!o.vae_path.empty()) {
    auto vae = paligemma::Vae::load(o.vae_path);
    if (!vae.ok()) {
      server.stop();
      listener.join();
      return fail(vae.status().message());
    }
    server.set_vae(std::make_shared<const paligemma::Vae>(std::move(*vae)));
  }
  auto model = paligemma::Model::load(f.model);
  if (!model.ok()) {
    server.stop();
    listener.join();
    return fail(model.status().message());
  }
  for (const std::string& w : model->warnings()) warn(w);
  const double load_s =
      std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  server.set_model(std::make_shared<const paligemma::Model>(std::move(*model)));
  log_line({{"msg", "ready"},
            {"model_id", o.model_id},
            {"load_s", load_s},
            {"threads", o.threads},
            {"max_queue", o.max_queue}});
  listener.join();
  log_line({{"msg", "stopped"}});
  return 0;
}

}  // namespace

void register_serve(CLI::App& app, Runners& runners) {
  auto f = std::make_shared<ServeFlags>();
  pgserve::ServerOptions& o = f->server;
  CLI::App* cmd = app.add_subcommand("serve",
                                     "Serve the model over HTTP: OpenAI chat completions, "
                                     "task endpoints, /health, /metrics and a web page");
  cmd->add_option("--model", f->model,
                  "Checkpoint folder (config.json, *.safetensors, tokenizer.model)")
      ->required();
  cmd->add_option("--vae", o.vae_path, "Segmentation mask decoder (vae-oid.npz) for /v1/segment");
  cmd->add_option("--host", o.host, "Address to listen on (default 127.0.0.1: this machine only)");
  cmd->add_option("--port", o.port, "Port (default 8080; 0: any free port, printed at start)")
      ->check(CLI::Range(0, 65535));
  cmd->add_option("--threads", o.threads, "Generations that run at once (default 1)")
      ->check(CLI::Range(1, 256));
  cmd->add_option("--compute-threads", o.compute_threads,
                  "Threads inside one generation (default: cores / --threads)")
      ->check(CLI::Range(0, 1024));
  cmd->add_option("--max-queue", o.max_queue,
                  "Generations that may wait for a free worker; past that, 503 with Retry-After "
                  "(default 16)")
      ->check(CLI::Range(0, 100000));
  cmd->add_option("--api-key", o.api_key,
                  "Require 'Authorization: Bearer KEY' on /v1/* (or set PALIGEMMA_API_KEY)");
  cmd->add_option("--model-id", f->model_id,
                  "Model id in /v1/models and responses (default: folder name)");
  cmd->add_option("--timeout", o.timeout_s,
                  "Seconds a request may take, queue wait included (default 300)")
      ->check(CLI::PositiveNumber);
  cmd->add_option("--max-body-mb", f->max_body_mb,
                  "Largest request body in MiB; larger gets 413 (default 20)")
      ->check(CLI::Range(1, 4096));
  cmd->add_option(
         "--max-image-pixels", o.limits.max_image_pixels,
         "Largest image (width * height, read from its header before decoding; default 16777216)")
      ->check(CLI::PositiveNumber);
  cmd->add_option("--max-tokens-limit", o.limits.max_tokens,
                  "Largest max_tokens a request may ask for (default 512)")
      ->check(CLI::PositiveNumber);
  cmd->add_option("--max-prompt-chars", o.limits.max_prompt_chars,
                  "Longest prompt in bytes (default 4096); the prompt must also fit the context")
      ->check(CLI::PositiveNumber);
  cmd->add_flag("--quiet", f->quiet, "No per-request log lines on stderr");
  runners["serve"] = [f] { return run_serve(*f); };
}

}  // namespace cli
