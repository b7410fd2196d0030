// The path of a generation through the server: submit to the queue, wait or stream, and
// account for it in the metrics and the request log.
#include <thread>

#include "server_impl.h"

namespace pgserve {
namespace {

constexpr auto kSlice = std::chrono::milliseconds(200);  // how often waits check for stop
constexpr auto kKeepAlive = std::chrono::seconds(2);     // SSE comment when nothing else

ApiError queue_timeout() {
  return ApiError{503, "the request timed out waiting for a free worker; retry later",
                  "server_error", "queue_timeout", ""};
}
ApiError generation_timeout() {
  return ApiError{504, "the request ran past the server's time limit per request", "server_error",
                  "timeout", ""};
}
ApiError shutting_down() {
  return ApiError{503, "the server is shutting down", "server_error", "shutting_down", ""};
}

}  // namespace

RequestLog& request_log() {
  thread_local RequestLog log;
  return log;
}

void reply_error(Server::Impl& s, httplib::Response& res, const ApiError& e) {
  res.status = e.status;
  if (e.status == 503) res.set_header("Retry-After", std::to_string(s.opt.retry_after_s));
  if (e.status == 401) res.set_header("WWW-Authenticate", "Bearer");
  res.set_content(error_body(e), "application/json");
  request_log().error_code = e.code.empty() ? e.type : e.code;
}

ApiError error_from_status(const paligemma::Status& st) {
  if (st.code() == paligemma::StatusCode::kInternal) {
    return ApiError{500, st.message(), "server_error", "internal_error", ""};
  }
  return ApiError{400, st.message(), "invalid_request_error", "invalid_input", ""};
}

bool submit_job(Server::Impl& s, const std::shared_ptr<GenJob>& job, httplib::Response& res) {
  if (s.queue->submit([job] { job->run(); })) return true;
  s.metrics.record_rejected();
  reply_error(
      s, res,
      ApiError{503,
               "the server is busy: " + std::to_string(s.queue->workers()) + " running and " +
                   std::to_string(s.queue->max_queue()) + " waiting; retry later",
               "server_error", "queue_full", ""});
  return false;
}

std::optional<ApiError> wait_done(Server::Impl& s, GenJob& job, Clock::time_point deadline) {
  while (true) {
    const GenJob::Phase phase = job.wait(std::min(deadline, Clock::now() + kSlice), nullptr);
    if (phase == GenJob::Phase::kDone) {
      if (job.cancel_reason() == "timeout") return generation_timeout();
      return std::nullopt;
    }
    if (s.stopping.load()) {
      job.cancel("shutdown");
      return shutting_down();
    }
    if (Clock::now() >= deadline) {
      job.cancel("timeout");
      return phase == GenJob::Phase::kQueued ? queue_timeout() : generation_timeout();
    }
  }
}

bool sink_write(httplib::DataSink& sink, const std::string& bytes) {
  if (sink.is_writable && !sink.is_writable()) return false;
  return sink.write(bytes.data(), bytes.size());
}

PumpEnd pump(Server::Impl& s, GenJob& job, httplib::DataSink& sink, Clock::time_point deadline,
             const std::function<std::string(const std::string&)>& event) {
  Clock::time_point last_write = Clock::now();
  while (true) {
    std::string text;
    const GenJob::Phase phase = job.wait(std::min(deadline, Clock::now() + kSlice), &text);
    if (!text.empty()) {
      if (!sink_write(sink, event(text))) {
        job.cancel("disconnect");
        return PumpEnd::kDisconnected;
      }
      last_write = Clock::now();
    }
    if (phase == GenJob::Phase::kDone) return PumpEnd::kDone;
    if (s.stopping.load()) {
      job.cancel("shutdown");
      return PumpEnd::kShutdown;
    }
    const Clock::time_point now = Clock::now();
    if (now >= deadline) {
      job.cancel("timeout");
      return phase == GenJob::Phase::kQueued ? PumpEnd::kQueueTimeout : PumpEnd::kTimeout;
    }
    if (now - last_write >= kKeepAlive) {
      if (!sink_write(sink, ": keep-alive\n\n")) {
        job.cancel("disconnect");
        return PumpEnd::kDisconnected;
      }
      last_write = now;
    }
  }
}

std::optional<ApiError> pump_error(PumpEnd end, const GenJob& job) {
  switch (end) {
    case PumpEnd::kDone:
      if (job.cancel_reason() == "timeout") return generation_timeout();
      if (!job.status().ok()) return error_from_status(job.status());
      return std::nullopt;
    case PumpEnd::kQueueTimeout: return queue_timeout();
    case PumpEnd::kTimeout: return generation_timeout();
    case PumpEnd::kShutdown: return shutting_down();
    case PumpEnd::kDisconnected: return std::nullopt;
  }
  return std::nullopt;
}

void record_job(Server::Impl& s, const GenJob& job, bool done) {
  RequestLog& log = request_log();
  const JobOutput* out = done ? &job.output() : nullptr;
  log.ttft_s = job.ttft_s();
  log.queue_s = job.queue_s();
  log.cancelled = job.cancel_reason();
  if (out) {
    log.prompt_tokens = out->prompt_tokens;
    log.completion_tokens = out->completion_tokens;
  }
  s.metrics.record_generation(out ? out->prompt_tokens : 0, out ? out->completion_tokens : 0,
                              log.ttft_s, log.queue_s, out ? out->decode_s : 0, log.cancelled);
}

}  // namespace pgserve
