// pg_loadtest: many concurrent clients against `paligemma serve` on this machine.
//
//   build/pg_loadtest --port P [--clients 64] [--duration 30] [--warmup 5] [--server-pid PID]
//                     [--image FILE] [--prompt "caption en"] [--max-tokens 8] [--stream]
//
// Targets 127.0.0.1 only. Bounded: at most --duration seconds (<= 600) after a warm-up of
// at most 60 s, and at most --max-requests requests (<= 1,000,000). Each client sends chat
// completions back to back on a keep-alive connection. A response counts as good when it
// is a 200 completion, or a well-formed 503 (Retry-After and a JSON error body). Prints one
// JSON object: requests/s, p50/p99 latency, status counts, and the server's RSS after the
// warm-up and at the end (from /proc/PID/status). Exit code 1 when any request failed.
#include <httplib.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <iterator>
#include <map>
#include <mutex>
#include <nlohmann/json.hpp>
#include <string>
#include <thread>
#include <vector>

#include "media.h"

namespace {

using Clock = std::chrono::steady_clock;
using nlohmann::json;

struct Flags {
  int port = 0;
  int clients = 64;
  double duration_s = 30;
  double warmup_s = 5;
  long max_requests = 1000000;
  long server_pid = 0;
  std::string image = "testdata/golden/tiny-pg1/image.png";
  std::string prompt = "caption en";
  int max_tokens = 8;
  bool stream = false;
};

// Reads VmRSS of a process in MiB; -1 when unknown.
double rss_mb(long pid) {
  if (pid <= 0) return -1;
  std::ifstream f("/proc/" + std::to_string(pid) + "/status");
  std::string line;
  while (std::getline(f, line)) {
    if (line.rfind("VmRSS:", 0) == 0) return std::atof(line.c_str() + 6) / 1024.0;
  }
  return -1;
}

bool parse_flags(int argc, char** argv, Flags* f) {
  for (int i = 1; i < argc; ++i) {
    const std::string a = argv[i];
    auto next = [&]() -> const char* { return i + 1 < argc ? argv[++i] : nullptr; };
    const char* v = nullptr;
    if (a == "--stream") {
      f->stream = true;
      continue;
    }
    if (!(v = next())) return false;
    if (a == "--port")
      f->port = std::atoi(v);
    else if (a == "--clients")
      f->clients = std::atoi(v);
    else if (a == "--duration")
      f->duration_s = std::atof(v);
    else if (a == "--warmup")
      f->warmup_s = std::atof(v);
    else if (a == "--max-requests")
      f->max_requests = std::atol(v);
    else if (a == "--server-pid")
      f->server_pid = std::atol(v);
    else if (a == "--image")
      f->image = v;
    else if (a == "--prompt")
      f->prompt = v;
    else if (a == "--max-tokens")
      f->max_tokens = std::atoi(v);
    else
      return false;
  }
  // The bounds this tool keeps whatever it is asked.
  f->clients = std::clamp(f->clients, 1, 256);
  f->duration_s = std::clamp(f->duration_s, 1.0, 600.0);
  f->warmup_s = std::clamp(f->warmup_s, 0.0, 60.0);
  f->max_requests = std::clamp(f->max_requests, 1L, 1000000L);
  return f->port > 0 && f->port < 65536;
}

double percentile(std::vector<double> v, double p) {
  if (v.empty()) return 0;
  std::sort(v.begin(), v.end());
  const size_t i =
      std::min(v.size() - 1, static_cast<size_t>(p * static_cast<double>(v.size() - 1) + 0.5));
  return v[i];
}

}  // namespace

int main(int argc, char** argv) {
  Flags f;
  if (!parse_flags(argc, argv, &f)) {
    std::fprintf(stderr,
                 "usage: pg_loadtest --port P [--clients N] [--duration S] [--warmup S] "
                 "[--max-requests N] [--server-pid PID] [--image F] [--prompt T] [--max-tokens N] "
                 "[--stream]\n");
    return 2;
  }
  std::ifstream in(f.image, std::ios::binary);
  const std::string bytes((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  if (bytes.empty()) {
    std::fprintf(stderr, "pg_loadtest: cannot read %s\n", f.image.c_str());
    return 2;
  }
  const std::string mime =
      bytes.size() > 1 && static_cast<unsigned char>(bytes[0]) == 0xFF ? "jpeg" : "png";
  const json body = {
      {"model", "paligemma"},
      {"max_tokens", f.max_tokens},
      {"temperature", 0},
      {"stream", f.stream},
      {"messages",
       {{{"role", "user"},
         {"content",
          {{{"type", "text"}, {"text", f.prompt}},
           {{"type", "image_url"},
            {"image_url",
             {{"url", "data:image/" + mime + ";base64," + pgserve::base64_encode(bytes)}}}}}}}}}};
  const std::string payload = body.dump();

  const Clock::time_point t0 = Clock::now();
  const Clock::time_point measure_from =
      t0 + std::chrono::duration_cast<Clock::duration>(std::chrono::duration<double>(f.warmup_s));
  const Clock::time_point end = measure_from + std::chrono::duration_cast<Clock::duration>(
                                                   std::chrono::duration<double>(f.duration_s));
  std::atomic<long> budget{f.max_requests};
  std::mutex mutex;
  std::vector<double> latencies;           // measured phase, 200 responses
  std::vector<double> rejected_latencies;  // measured phase, well-formed 503s
  std::map<std::string, long> outcomes;    // measured phase: "200", "503", "fail:..."
  long measured = 0;
  int failures_logged = 0;                     // the first failures are described on stderr
  std::vector<long> per_client(f.clients, 0);  // measured answers (200 or 503) per client

  std::vector<std::thread> threads;
  for (int c = 0; c < f.clients; ++c) {
    threads.emplace_back([&, c] {
      httplib::Client client("127.0.0.1", f.port);
      client.set_keep_alive(true);
      client.set_tcp_nodelay(true);
      client.set_read_timeout(120);
      client.set_write_timeout(30);
      while (Clock::now() < end && budget.fetch_sub(1) > 0) {
        const Clock::time_point s = Clock::now();
        auto res = client.Post("/v1/chat/completions", payload, "application/json");
        const double ms = std::chrono::duration<double, std::milli>(Clock::now() - s).count();
        std::string outcome;
        if (!res) {
          outcome = "fail:" + httplib::to_string(res.error());
        } else if (res->status == 200) {
          const json j = json::parse(res->body, nullptr, false);
          const bool ok = f.stream ? res->body.find("data: [DONE]") != std::string::npos
                                   : (!j.is_discarded() && j.contains("choices"));
          outcome = ok ? "200" : "fail:bad 200 body";
        } else if (res->status == 503) {
          const json j = json::parse(res->body, nullptr, false);
          const bool ok =
              res->has_header("Retry-After") && !j.is_discarded() && j.contains("error");
          outcome = ok ? "503" : "fail:bad 503";
        } else {
          outcome = "fail:" + std::to_string(res->status);
        }
        std::lock_guard<std::mutex> lock(mutex);
        if (outcome.rfind("fail:", 0) == 0 && ++failures_logged <= 10) {
          std::fprintf(stderr, "pg_loadtest: client %d: %s after %.1f ms%s%s\n", c, outcome.c_str(),
                       ms, res ? ": " : "", res ? res->body.substr(0, 200).c_str() : "");
        }
        if (s < measure_from) continue;
        ++outcomes[outcome];
        ++measured;
        if (outcome == "200" || outcome == "503") ++per_client[c];
        if (outcome == "200") latencies.push_back(ms);
        if (outcome == "503") rejected_latencies.push_back(ms);
        if (outcome == "503") std::this_thread::sleep_for(std::chrono::milliseconds(50));
      }
    });
  }
  // RSS once the warm-up is over, the peak during the run, and at the end.
  double rss_warm = -1, rss_peak = -1;
  while (Clock::now() < measure_from) std::this_thread::sleep_for(std::chrono::milliseconds(50));
  rss_warm = rss_mb(f.server_pid);
  while (Clock::now() < end && budget.load() > 0) {
    rss_peak = std::max(rss_peak, rss_mb(f.server_pid));
    std::this_thread::sleep_for(std::chrono::milliseconds(250));
  }
  for (std::thread& t : threads) t.join();
  const double rss_end = rss_mb(f.server_pid);
  const double elapsed =
      std::chrono::duration<double>(std::min(Clock::now(), end) - measure_from).count();

  long failures = 0;
  for (const auto& [k, n] : outcomes) {
    if (k.rfind("fail:", 0) == 0) failures += n;
  }
  json j = {
      {"clients", f.clients},
      {"duration_s", elapsed},
      {"requests", measured},
      {"requests_per_s", elapsed > 0 ? static_cast<double>(measured) / elapsed : 0.0},
      {"completions_per_s", elapsed > 0 ? static_cast<double>(outcomes["200"]) / elapsed : 0.0},
      {"latency_ms", {{"p50", percentile(latencies, 0.5)}, {"p99", percentile(latencies, 0.99)}}},
      {"latency_503_ms",
       {{"p50", percentile(rejected_latencies, 0.5)},
        {"p99", percentile(rejected_latencies, 0.99)}}},
      {"outcomes", outcomes},
      {"answers_per_client",
       {{"min", *std::min_element(per_client.begin(), per_client.end())},
        {"max", *std::max_element(per_client.begin(), per_client.end())}}},
      {"failures", failures},
      {"rss_mb", {{"after_warmup", rss_warm}, {"peak", rss_peak}, {"end", rss_end}}}};
  if (rss_warm > 0 && rss_end > 0) j["rss_growth"] = rss_end / rss_warm - 1.0;
  std::printf("%s\n", j.dump(2).c_str());
  return failures == 0 && measured > 0 ? 0 : 1;
}
