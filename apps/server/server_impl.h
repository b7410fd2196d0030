// Server::Impl and the helpers its handler files share (server.cc: setup, logging, static
// routes; completions.cc: /v1/chat/completions; task_api.cc: the task endpoints).
// Internal to apps/server.
#pragma once

#include <httplib.h>

#include <atomic>
#include <memory>
#include <mutex>
#include <optional>
#include <string>

#include "job.h"
#include "metrics.h"
#include "openai.h"
#include "queue.h"
#include "server.h"

namespace pgserve {

// What the per-request log line says beyond method, path and status. Filled by the handler
// (or the streaming content provider, which runs on the same connection thread afterwards)
// and read by the logger, which httplib calls after the response's last byte.
struct RequestLog {
  Clock::time_point start;
  bool started = false;
  std::string id;
  std::string task;
  bool stream = false;
  int64_t prompt_tokens = -1;
  int64_t completion_tokens = -1;
  double ttft_s = -1;
  double queue_s = -1;
  std::string finish_reason;
  std::string error_code;
  std::string cancelled;
};

// The log entry of the request being served on this thread.
RequestLog& request_log();

// httplib's server with access to its listening socket (to raise the listen backlog, which
// Debian's build of cpp-httplib fixes at 5).
class HttpServer : public httplib::Server {
 public:
  socket_t listening_socket() const { return svr_sock_; }
};

struct Server::Impl {
  explicit Impl(ServerOptions o);

  ServerOptions opt;
  HttpServer http;
  Metrics metrics;
  std::unique_ptr<WorkQueue> queue;
  std::atomic<bool> stopping{false};
  std::atomic<bool> run_active{false};  // run() is between its start and its return
  int bound_port = 0;
  int64_t created = 0;  // Unix seconds at start, for /v1/models
  uint64_t id_base = 0;
  std::atomic<uint64_t> next_id{0};

  // The loaded model, or null while loading.
  std::shared_ptr<const paligemma::Model> model() const;
  void set_model(std::shared_ptr<const paligemma::Model> m);
  // The segmentation mask decoder, or null.
  std::shared_ptr<const paligemma::Vae> vae() const;
  void set_vae(std::shared_ptr<const paligemma::Vae> v);

  // A fresh id suffix (16 hex digits), unique in this process.
  std::string new_id();

 private:
  mutable std::mutex model_mutex_;
  std::shared_ptr<const paligemma::Model> model_;
  std::shared_ptr<const paligemma::Vae> vae_;
};

// Sets an error response: status, JSON body, and for 503 a Retry-After header. Records the
// error's code in the request log.
void reply_error(Server::Impl& s, httplib::Response& res, const ApiError& e);
// Takes a failed model call's status; returns the error to answer (400 for the client's
// input, 500 for the server's own failures).
ApiError error_from_status(const paligemma::Status& st);

// Submits a job to the work queue. Returns false after answering 503 (queue full).
bool submit_job(Server::Impl& s, const std::shared_ptr<GenJob>& job, httplib::Response& res);

// Waits for a job that answers in one piece. Returns nullopt when the job is done, else the
// error to answer: 503 (timed out in the queue, or shutting down) or 504 (timed out while
// generating); the job is cancelled then.
std::optional<ApiError> wait_done(Server::Impl& s, GenJob& job, Clock::time_point deadline);

// How a stream ended.
enum class PumpEnd { kDone, kDisconnected, kQueueTimeout, kTimeout, kShutdown };

// Streams a job's text to a client: each new piece of text goes out as event(text); while
// nothing comes, an SSE comment every 2 s keeps the connection checked. Cancels the job
// when the client is gone, the deadline passes, or the server stops.
PumpEnd pump(Server::Impl& s, GenJob& job, httplib::DataSink& sink, Clock::time_point deadline,
             const std::function<std::string(const std::string&)>& event);

// Writes bytes to a streaming response; false when the client is gone.
bool sink_write(httplib::DataSink& sink, const std::string& bytes);

// Takes how a stream ended; returns the error to send as a final event (none for kDone).
std::optional<ApiError> pump_error(PumpEnd end, const GenJob& job);

// Records a finished (or abandoned) job in the metrics and the request log.
void record_job(Server::Impl& s, const GenJob& job, bool done);

// Route handlers.
void handle_chat(Server::Impl& s, const httplib::Request& req, httplib::Response& res);
void handle_task(Server::Impl& s, TaskKind kind, const httplib::Request& req,
                 httplib::Response& res);

}  // namespace pgserve
