// The HTTP server behind `paligemma serve`: OpenAI-compatible chat completions, the task
// endpoints, /health, /metrics and the web page, over cpp-httplib. Uses only the public API.
//
//   pgserve::Server server(options);
//   std::string error;
//   if (!server.bind(&error)) { ... }            // listening; server.port() is known
//   std::thread t([&] { server.run(); });        // /health answers 503 "loading"
//   server.set_model(std::make_shared<const paligemma::Model>(std::move(*model)));
//   ...
//   server.stop(); t.join();
#pragma once

#include <memory>
#include <string>

#include "openai.h"
#include "paligemma/paligemma.h"
#include "paligemma/tasks.h"

namespace pgserve {

struct ServerOptions {
  std::string host = "127.0.0.1";      // loopback unless asked otherwise
  int port = 8080;                     // 0: any free port (see Server::port())
  int threads = 1;                     // generations that run at once
  int compute_threads = 0;             // threads inside one generation (0: cores / threads)
  int max_queue = 16;                  // generations that may wait; past that, 503
  int http_threads = 0;                // connections served at once (0: threads + max_queue + 64)
  std::string api_key;                 // when set, /v1/* needs "Authorization: Bearer KEY"
  std::string model_id = "paligemma";  // the id /v1/models lists and responses carry
  std::string vae_path;                // segmentation mask decoder (vae-oid.npz), for /v1/segment
  size_t max_body_bytes = 20u << 20;   // larger bodies get 413
  double timeout_s = 300;              // per request, queue wait included
  int retry_after_s = 1;               // Retry-After on 503
  bool log_requests = true;            // one JSON line per request on stderr
  Limits limits;
};

class Server {
 public:
  explicit Server(ServerOptions options);
  ~Server();
  Server(const Server&) = delete;
  Server& operator=(const Server&) = delete;

  // Opens the listening socket on options.host:options.port. Returns false with *error set
  // when it cannot (address in use, bad host).
  bool bind(std::string* error);
  // The bound port (the one chosen when options.port was 0); 0 before bind().
  int port() const;
  // Serves connections until stop(); call after bind(). Returns false if listening failed.
  bool run();
  // Stops accepting, cancels running generations and makes run() return. Thread-safe.
  void stop();

  // Hands over the loaded model: /health turns 200 and /v1/* requests are served. Before
  // that they get 503 with Retry-After.
  void set_model(std::shared_ptr<const paligemma::Model> model);
  // Hands over the segmentation mask decoder: /v1/segment answers then carry masks. Call
  // before set_model.
  void set_vae(std::shared_ptr<const paligemma::Vae> vae);

  struct Impl;

 private:
  std::unique_ptr<Impl> impl_;
};

// Takes a task request; returns the prompt the released mix checkpoints expect, built by
// the task layer: "caption en", "answer en Q", "detect a ; b", "segment a", or the task
// layer's error for a bad language or object list.
paligemma::Result<std::string> task_prompt(const TaskRequest& t);

}  // namespace pgserve
