// Counters, gauges and histograms for GET /metrics, in the Prometheus text format (0.0.4).
// Thread-safe: every handler records into one Metrics object.
#pragma once

#include <cstdint>
#include <map>
#include <mutex>
#include <string>
#include <utility>
#include <vector>

namespace pgserve {

// A cumulative histogram with fixed upper bounds (seconds).
class Histogram {
 public:
  explicit Histogram(std::vector<double> bounds);
  void observe(double v);
  // Appends NAME_bucket{le=...}, NAME_sum and NAME_count lines to *out.
  void render(const std::string& name, std::string* out) const;

 private:
  std::vector<double> bounds_;
  std::vector<uint64_t> counts_;  // per bucket, not cumulative; the last is +Inf
  double sum_ = 0;
  uint64_t count_ = 0;
};

// What the queue looks like when /metrics is read.
struct QueueGauges {
  int queued = 0;
  int running = 0;
  int workers = 0;
  int max_queue = 0;
  bool ready = false;
};

class Metrics {
 public:
  Metrics();

  // One finished HTTP request: its route (a fixed name such as "/v1/chat/completions", or
  // "other") and status code, and its duration.
  void record_request(const std::string& route, int status, double seconds);
  // One finished generation: tokens in and out, time to first token as the client saw it
  // (queue wait included), time in the queue, decode time, and whether and why it stopped
  // early ("" when it did not, else "disconnect" or "timeout").
  void record_generation(int64_t prompt_tokens, int64_t completion_tokens, double ttft_s,
                         double queue_s, double decode_s, const std::string& cancelled);
  // A request refused because the queue was full.
  void record_rejected();

  // Returns the exposition text, with the queue's gauges read just now.
  std::string render(const QueueGauges& q) const;

 private:
  mutable std::mutex mutex_;
  std::map<std::pair<std::string, int>, uint64_t> requests_;  // (route, code) -> count
  std::map<int, uint64_t> errors_;                            // code >= 400 -> count
  std::map<std::string, uint64_t> cancelled_;                 // reason -> count
  uint64_t rejected_ = 0;
  uint64_t generations_ = 0;
  uint64_t prompt_tokens_ = 0;
  uint64_t completion_tokens_ = 0;
  double decode_seconds_ = 0;
  double decode_tok_s_ = 0;  // exponential moving average over generations
  Histogram request_seconds_;
  Histogram ttft_seconds_;
  Histogram queue_seconds_;
};

}  // namespace pgserve
