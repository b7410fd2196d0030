#include "metrics.h"

#include <algorithm>
#include <cstdio>

namespace pgserve {
namespace {

std::string num(double v) {
  char buf[64];
  std::snprintf(buf, sizeof buf, "%.9g", v);
  return buf;
}

void header(std::string* out, const char* name, const char* type, const char* help) {
  *out += std::string("# HELP ") + name + " " + help + "\n# TYPE " + name + " " + type + "\n";
}

const std::vector<double> kLatencyBounds = {0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5,
                                            1,     2.5,  5,     10,   30,  60,   120};

}  // namespace

Histogram::Histogram(std::vector<double> bounds)
    : bounds_(std::move(bounds)), counts_(bounds_.size() + 1, 0) {}

void Histogram::observe(double v) {
  size_t i = 0;
  while (i < bounds_.size() && v > bounds_[i]) ++i;
  ++counts_[i];
  sum_ += v;
  ++count_;
}

void Histogram::render(const std::string& name, std::string* out) const {
  uint64_t cumulative = 0;
  for (size_t i = 0; i < bounds_.size(); ++i) {
    cumulative += counts_[i];
    *out += name + "_bucket{le=\"" + num(bounds_[i]) + "\"} " + std::to_string(cumulative) + "\n";
  }
  cumulative += counts_.back();
  *out += name + "_bucket{le=\"+Inf\"} " + std::to_string(cumulative) + "\n";
  *out += name + "_sum " + num(sum_) + "\n";
  *out += name + "_count " + std::to_string(count_) + "\n";
}

Metrics::Metrics()
    : request_seconds_(kLatencyBounds),
      ttft_seconds_(kLatencyBounds),
      queue_seconds_(kLatencyBounds) {}

void Metrics::record_request(const std::string& route, int status, double seconds) {
  std::lock_guard<std::mutex> lock(mutex_);
  ++requests_[{route, status}];
  if (status >= 400) ++errors_[status];
  request_seconds_.observe(seconds);
}

void Metrics::record_generation(int64_t prompt_tokens, int64_t completion_tokens, double ttft_s,
                                double queue_s, double decode_s, const std::string& cancelled) {
  std::lock_guard<std::mutex> lock(mutex_);
  ++generations_;
  prompt_tokens_ += static_cast<uint64_t>(std::max<int64_t>(0, prompt_tokens));
  completion_tokens_ += static_cast<uint64_t>(std::max<int64_t>(0, completion_tokens));
  decode_seconds_ += decode_s;
  if (completion_tokens > 1 && decode_s > 0) {
    const double rate = static_cast<double>(completion_tokens - 1) / decode_s;
    decode_tok_s_ = decode_tok_s_ == 0 ? rate : 0.9 * decode_tok_s_ + 0.1 * rate;
  }
  if (ttft_s >= 0) ttft_seconds_.observe(ttft_s);
  queue_seconds_.observe(queue_s);
  if (!cancelled.empty()) ++cancelled_[cancelled];
}

void Metrics::record_rejected() {
  std::lock_guard<std::mutex> lock(mutex_);
  ++rejected_;
}

std::string Metrics::render(const QueueGauges& q) const {
  std::lock_guard<std::mutex> lock(mutex_);
  std::string out;
  header(&out, "pg_model_ready", "gauge", "1 once the model is loaded and requests are served");
  out += "pg_model_ready " + std::to_string(q.ready ? 1 : 0) + "\n";
  header(&out, "pg_http_requests_total", "counter",
         "HTTP requests answered, by route and status code");
  for (const auto& [key, n] : requests_) {
    out += "pg_http_requests_total{route=\"" + key.first + "\",code=\"" +
           std::to_string(key.second) + "\"} " + std::to_string(n) + "\n";
  }
  header(&out, "pg_http_errors_total", "counter",
         "HTTP responses with a status code of 400 or more, by code");
  for (const auto& [code, n] : errors_) {
    out +=
        "pg_http_errors_total{code=\"" + std::to_string(code) + "\"} " + std::to_string(n) + "\n";
  }
  header(&out, "pg_queue_rejected_total", "counter",
         "Requests refused with 503 because the queue was full");
  out += "pg_queue_rejected_total " + std::to_string(rejected_) + "\n";
  header(&out, "pg_queue_depth", "gauge", "Generations waiting for a worker");
  out += "pg_queue_depth " + std::to_string(q.queued) + "\n";
  header(&out, "pg_queue_capacity", "gauge", "Most generations that may wait (--max-queue)");
  out += "pg_queue_capacity " + std::to_string(q.max_queue) + "\n";
  header(&out, "pg_active_generations", "gauge", "Generations running now");
  out += "pg_active_generations " + std::to_string(q.running) + "\n";
  header(&out, "pg_workers", "gauge", "Generations that may run at once (--threads)");
  out += "pg_workers " + std::to_string(q.workers) + "\n";
  header(&out, "pg_generations_total", "counter", "Generations finished");
  out += "pg_generations_total " + std::to_string(generations_) + "\n";
  header(&out, "pg_generations_cancelled_total", "counter",
         "Generations stopped early, by reason (client disconnect, timeout)");
  for (const auto& [reason, n] : cancelled_) {
    out += "pg_generations_cancelled_total{reason=\"" + reason + "\"} " + std::to_string(n) + "\n";
  }
  header(&out, "pg_prompt_tokens_total", "counter",
         "Prompt tokens processed (image tokens included)");
  out += "pg_prompt_tokens_total " + std::to_string(prompt_tokens_) + "\n";
  header(&out, "pg_completion_tokens_total", "counter", "Tokens generated");
  out += "pg_completion_tokens_total " + std::to_string(completion_tokens_) + "\n";
  header(&out, "pg_decode_seconds_total", "counter",
         "Seconds spent decoding after the first token");
  out += "pg_decode_seconds_total " + num(decode_seconds_) + "\n";
  header(&out, "pg_decode_tokens_per_second", "gauge",
         "Decode speed of one generation, moving average over recent generations");
  out += "pg_decode_tokens_per_second " + num(decode_tok_s_) + "\n";
  header(&out, "pg_time_to_first_token_seconds", "histogram",
         "From the request's arrival to its first generated token (queue wait included)");
  ttft_seconds_.render("pg_time_to_first_token_seconds", &out);
  header(&out, "pg_queue_wait_seconds", "histogram", "Time a generation waited for a worker");
  queue_seconds_.render("pg_queue_wait_seconds", &out);
  header(&out, "pg_request_duration_seconds", "histogram",
         "HTTP request duration, to the last byte sent");
  request_seconds_.render("pg_request_duration_seconds", &out);
  return out;
}

}  // namespace pgserve
