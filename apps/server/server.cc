// Server setup: routes, authentication, readiness, error bodies, the per-request log line,
// /health, /metrics, /v1/models and the web page.
#include "server.h"

#include <signal.h>
#include <sys/socket.h>

#include <algorithm>
#include <cstdio>
#include <ctime>
#include <nlohmann/json.hpp>
#include <random>
#include <thread>

#include "server_impl.h"
#include "web_assets.h"

namespace pgserve {
namespace {

using nlohmann::json;

double seconds(Clock::duration d) { return std::chrono::duration<double>(d).count(); }

// Takes a request path; returns the route it counts under in the metrics (a fixed set, so
// that clients cannot grow the label space).
std::string route_of(const std::string& path) {
  static const char* kRoutes[] = {"/",        "/app.js",    "/style.css",           "/health",
                                  "/metrics", "/v1/models", "/v1/chat/completions", "/v1/caption",
                                  "/v1/ask",  "/v1/detect", "/v1/segment"};
  for (const char* r : kRoutes) {
    if (path == r) return r;
  }
  if (path.rfind("/v1/models/", 0) == 0) return "/v1/models/{id}";
  return "other";
}

// Compares two strings in time that depends only on their lengths.
bool same_secret(const std::string& a, const std::string& b) {
  if (a.size() != b.size()) return false;
  unsigned char diff = 0;
  for (size_t i = 0; i < a.size(); ++i) diff |= static_cast<unsigned char>(a[i] ^ b[i]);
  return diff == 0;
}

std::string utc_now() {
  const auto now = std::chrono::system_clock::now();
  const std::time_t t = std::chrono::system_clock::to_time_t(now);
  const auto ms =
      std::chrono::duration_cast<std::chrono::milliseconds>(now.time_since_epoch()).count() % 1000;
  std::tm tm{};
  gmtime_r(&t, &tm);
  char buf[64];
  std::snprintf(buf, sizeof buf, "%04d-%02d-%02dT%02d:%02d:%02d.%03dZ", tm.tm_year + 1900,
                tm.tm_mon + 1, tm.tm_mday, tm.tm_hour, tm.tm_min, tm.tm_sec, static_cast<int>(ms));
  return buf;
}

// Called by httplib after each response's last byte: metrics and one JSON line on stderr.
void log_request(Server::Impl& s, const httplib::Request& req, const httplib::Response& res) {
  RequestLog& log = request_log();
  const double duration = log.started ? seconds(Clock::now() - log.start) : 0.0;
  s.metrics.record_request(route_of(req.path), res.status, duration);
  if (s.opt.log_requests) {
    nlohmann::ordered_json j = {{"ts", utc_now()},
                                {"level", res.status >= 500   ? "error"
                                          : res.status >= 400 ? "warn"
                                                              : "info"},
                                {"msg", "request"},
                                {"id", log.id},
                                {"method", req.method},
                                {"path", req.path},
                                {"status", res.status},
                                {"duration_ms", duration * 1e3},
                                {"remote", req.remote_addr},
                                {"bytes_in", req.body.size()}};
    if (!log.task.empty()) j["task"] = log.task;
    if (log.stream) j["stream"] = true;
    if (log.prompt_tokens >= 0) j["prompt_tokens"] = log.prompt_tokens;
    if (log.completion_tokens >= 0) j["completion_tokens"] = log.completion_tokens;
    if (log.queue_s >= 0) j["queue_ms"] = log.queue_s * 1e3;
    if (log.ttft_s >= 0) j["ttft_ms"] = log.ttft_s * 1e3;
    if (!log.finish_reason.empty()) j["finish_reason"] = log.finish_reason;
    if (!log.error_code.empty()) j["error"] = log.error_code;
    if (!log.cancelled.empty()) j["cancelled"] = log.cancelled;
    const std::string line = j.dump(-1, ' ', false, json::error_handler_t::replace) + "\n";
    std::fwrite(line.data(), 1, line.size(), stderr);
  }
  log = RequestLog{};
}

// Runs before routing (and before a body is read): starts the log entry, answers 401
// without the API key and 503 while the model loads.
httplib::Server::HandlerResponse pre_route(Server::Impl& s, const httplib::Request& req,
                                           httplib::Response& res) {
  RequestLog& log = request_log();
  log = RequestLog{};
  log.start = Clock::now();
  log.started = true;
  log.id = "req-" + s.new_id();
  res.set_header("X-Request-Id", log.id);
  if (req.path.rfind("/v1/", 0) != 0) return httplib::Server::HandlerResponse::Unhandled;
  res.set_header("Cache-Control", "no-store");
  if (!s.opt.api_key.empty() &&
      !same_secret(req.get_header_value("Authorization"), "Bearer " + s.opt.api_key)) {
    reply_error(s, res,
                ApiError{401, "missing or wrong API key: send 'Authorization: Bearer KEY'",
                         "invalid_request_error", "invalid_api_key", ""});
    return httplib::Server::HandlerResponse::Handled;
  }
  if (!s.model()) {
    reply_error(s, res,
                ApiError{503, "the model is still loading", "server_error", "model_loading", ""});
    return httplib::Server::HandlerResponse::Handled;
  }
  return httplib::Server::HandlerResponse::Unhandled;
}

// Gives every error response without a body (httplib's own 400/404/413/...) a JSON one.
void fill_error(Server::Impl& s, const httplib::Request& req, httplib::Response& res) {
  if (!res.body.empty() || res.content_provider_) return;
  ApiError e{res.status, "", "invalid_request_error", "", ""};
  switch (res.status) {
    case 404:
      e.message = "no route for " + req.method + " " + req.path;
      e.code = "not_found";
      break;
    case 413:
      e.message =
          "the request body is larger than " + std::to_string(s.opt.max_body_bytes) + " bytes";
      if (req.get_header_value("Content-Type").find("application/x-www-form-urlencoded") == 0) {
        // cpp-httplib caps url-encoded forms at 8192 bytes whatever the body limit.
        e.message =
            "url-encoded bodies are limited to 8192 bytes: send JSON with "
            "'Content-Type: application/json', or a multipart/form-data upload";
      }
      e.code = "payload_too_large";
      break;
    case 414:
      e.message = "the request URI is too long";
      e.code = "uri_too_long";
      break;
    case 416: e.message = "bad range"; break;
    default:
      e.message = res.status >= 500 ? "internal server error" : "bad request";
      e.type = res.status >= 500 ? "server_error" : "invalid_request_error";
      e.code = res.status >= 500 ? "internal_error" : "bad_request";
  }
  reply_error(s, res, e);
}

void setup_routes(Server::Impl& s) {
  httplib::Server& h = s.http;
  h.set_pre_routing_handler(
      [&s](const httplib::Request& req, httplib::Response& res) { return pre_route(s, req, res); });
  h.set_error_handler(
      [&s](const httplib::Request& req, httplib::Response& res) { fill_error(s, req, res); });
  h.set_exception_handler(
      [&s](const httplib::Request&, httplib::Response& res, std::exception_ptr ep) {
        std::string what = "unexpected error";
        try {
          if (ep) std::rethrow_exception(ep);
        } catch (const std::exception& e) {
          what = e.what();
        } catch (...) {
        }
        reply_error(s, res, ApiError{500, what, "server_error", "internal_error", ""});
      });
  h.set_logger([&s](const httplib::Request& req, const httplib::Response& res) {
    log_request(s, req, res);
  });

  h.Get("/health", [&s](const httplib::Request&, httplib::Response& res) {
    if (s.model()) {
      res.set_content(json{{"status", "ok"}, {"model", s.opt.model_id}}.dump(), "application/json");
    } else {
      res.status = 503;
      res.set_header("Retry-After", std::to_string(s.opt.retry_after_s));
      res.set_content(R"({"status":"loading"})", "application/json");
    }
  });
  h.Get("/metrics", [&s](const httplib::Request&, httplib::Response& res) {
    QueueGauges q{s.queue->queued(), s.queue->running(), s.queue->workers(), s.queue->max_queue(),
                  s.model() != nullptr};
    res.set_content(s.metrics.render(q), "text/plain; version=0.0.4; charset=utf-8");
  });
  h.Get("/v1/models", [&s](const httplib::Request&, httplib::Response& res) {
    res.set_content(models_body(s.opt.model_id, s.created), "application/json");
  });
  h.Get("/v1/models/(.+)", [&s](const httplib::Request& req, httplib::Response& res) {
    if (req.matches[1] != s.opt.model_id) {
      reply_error(s, res,
                  ApiError{404, "no model '" + std::string(req.matches[1]) + "'",
                           "invalid_request_error", "model_not_found", "model"});
      return;
    }
    res.set_content(model_body(s.opt.model_id, s.created), "application/json");
  });
  h.Post("/v1/chat/completions",
         [&s](const httplib::Request& req, httplib::Response& res) { handle_chat(s, req, res); });
  const std::pair<const char*, TaskKind> tasks[] = {{"/v1/caption", TaskKind::kCaption},
                                                    {"/v1/ask", TaskKind::kAsk},
                                                    {"/v1/detect", TaskKind::kDetect},
                                                    {"/v1/segment", TaskKind::kSegment}};
  for (const auto& [path, kind] : tasks) {
    h.Post(path, [&s, kind = kind](const httplib::Request& req, httplib::Response& res) {
      handle_task(s, kind, req, res);
    });
  }
  h.Get("/(|index\\.html|app\\.js|style\\.css)",
        [](const httplib::Request& req, httplib::Response& res) {
          const WebAsset* a = find_web_asset(req.path == "/index.html" ? "/" : req.path);
          if (!a) {
            res.status = 404;
            return;
          }
          res.set_content(reinterpret_cast<const char*>(a->data), a->size, a->content_type);
          res.set_header("X-Content-Type-Options", "nosniff");
          res.set_header("Content-Security-Policy",
                         "default-src 'self'; img-src 'self' data: blob:; style-src 'self'; "
                         "script-src 'self'; connect-src 'self'");
        });
}

}  // namespace

Server::Impl::Impl(ServerOptions o) : opt(std::move(o)) {
  created = static_cast<int64_t>(std::time(nullptr));
  std::random_device rd;
  id_base = (static_cast<uint64_t>(rd()) << 32) ^ rd();
}

std::shared_ptr<const paligemma::Model> Server::Impl::model() const {
  std::lock_guard<std::mutex> lock(model_mutex_);
  return model_;
}

void Server::Impl::set_model(std::shared_ptr<const paligemma::Model> m) {
  std::lock_guard<std::mutex> lock(model_mutex_);
  model_ = std::move(m);
}

std::shared_ptr<const paligemma::Vae> Server::Impl::vae() const {
  std::lock_guard<std::mutex> lock(model_mutex_);
  return vae_;
}

void Server::Impl::set_vae(std::shared_ptr<const paligemma::Vae> v) {
  std::lock_guard<std::mutex> lock(model_mutex_);
  vae_ = std::move(v);
}

std::string Server::Impl::new_id() {
  // A counter mixed with a per-process random value: unique here, unpredictable across runs.
  uint64_t x = id_base + 0x9E3779B97F4A7C15ull * (next_id.fetch_add(1) + 1);
  x ^= x >> 31;
  char buf[17];
  std::snprintf(buf, sizeof buf, "%016llx", static_cast<unsigned long long>(x));
  return buf;
}

Server::Server(ServerOptions options) : impl_(std::make_unique<Impl>(std::move(options))) {
  Impl& s = *impl_;
  ServerOptions& o = s.opt;
  o.threads = std::max(1, o.threads);
  o.max_queue = std::max(0, o.max_queue);
  if (o.compute_threads <= 0) {
    const int cores = static_cast<int>(std::max(1u, std::thread::hardware_concurrency()));
    o.compute_threads = std::max(1, cores / o.threads);
  }
  const int compute = o.compute_threads;
  s.queue = std::make_unique<WorkQueue>(o.threads, o.max_queue,
                                        [compute] { paligemma::set_threads(compute); });
  // Every waiting or running generation holds a connection thread; the rest serve /health,
  // /metrics and the 503s, so that a full queue is answered rather than left unread.
  const int http_threads = o.http_threads > 0 ? o.http_threads : o.threads + o.max_queue + 64;
  s.http.new_task_queue = [http_threads] { return new httplib::ThreadPool(http_threads); };
  s.http.set_payload_max_length(o.max_body_bytes);
  // A keep-alive connection holds a connection thread while it waits for its next request:
  // after 100 requests it is closed, so that waiting connections get their turn.
  s.http.set_keep_alive_max_count(100);
  s.http.set_keep_alive_timeout(5);
  s.http.set_read_timeout(30);
  s.http.set_write_timeout(10);
  s.http.set_tcp_nodelay(true);
  // SO_REUSEADDR only: httplib's default adds SO_REUSEPORT, with which a second server on a
  // busy port would start and silently share it instead of failing.
  s.http.set_socket_options([](socket_t sock) {
    int yes = 1;
    ::setsockopt(sock, SOL_SOCKET, SO_REUSEADDR, &yes, sizeof(yes));
  });
  setup_routes(s);
}

Server::~Server() {
  stop();
  impl_->queue.reset();  // runs what is left (all cancelled) and joins the workers
}

bool Server::bind(std::string* error) {
  // A client that goes away must not kill the process with SIGPIPE.
  ::signal(SIGPIPE, SIG_IGN);
  Impl& s = *impl_;
  if (s.opt.port == 0) {
    s.bound_port = s.http.bind_to_any_port(s.opt.host);
  } else if (s.http.bind_to_port(s.opt.host, s.opt.port)) {
    s.bound_port = s.opt.port;
  } else {
    s.bound_port = -1;
  }
  if (s.bound_port > 0) {
    // A burst of clients must not overflow the accept queue: a backlog of 5 drops their
    // handshakes, which then retry after a second or fail. listen() again only resizes it.
    ::listen(s.http.listening_socket(), SOMAXCONN);
  }
  if (s.bound_port <= 0) {
    s.bound_port = 0;
    if (error) {
      *error = "cannot listen on " + s.opt.host + ":" + std::to_string(s.opt.port) +
               " (address in use or not available)";
    }
    return false;
  }
  return true;
}

int Server::port() const { return impl_->bound_port; }

bool Server::run() {
  Impl& s = *impl_;
  s.run_active.store(true);
  bool ok = true;
  if (!s.stopping.load()) ok = s.http.listen_after_bind();
  s.run_active.store(false);
  return ok;
}

void Server::stop() {
  Impl& s = *impl_;
  s.stopping.store(true);
  // httplib's stop() reaches only a server that is already listening: when run() is on its
  // way into the listen loop, wait until it is there (or has given up).
  while (s.run_active.load() && !s.http.is_running()) {
    std::this_thread::sleep_for(std::chrono::milliseconds(1));
  }
  s.http.stop();
}

void Server::set_model(std::shared_ptr<const paligemma::Model> model) {
  impl_->set_model(std::move(model));
}
void Server::set_vae(std::shared_ptr<const paligemma::Vae> vae) { impl_->set_vae(std::move(vae)); }

}  // namespace pgserve
