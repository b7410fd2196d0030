// One generation travelling from an HTTP handler to a worker and back: the handler submits
// it to the WorkQueue and waits on it; the worker runs it and hands over the text as it is
// produced. Either side may end it early: the handler cancels on client disconnect or
// timeout, and the text callback then returns false, which stops the model.
#pragma once

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <functional>
#include <mutex>
#include <string>
#include <vector>

#include "openai.h"
#include "paligemma/paligemma.h"

namespace pgserve {

using Clock = std::chrono::steady_clock;

// What a finished job produced.
struct JobOutput {
  std::string text;            // the generated text (cut at a stop sequence)
  std::string stop_reason;     // the model's: "eos", "max_tokens", "context", "stopped"
  bool stop_sequence = false;  // a stop sequence ended it
  int64_t prompt_tokens = 0;
  int64_t completion_tokens = 0;
  double decode_s = 0;
  std::string result_json;  // task endpoints: the task's JSON result
};

// The model call a job makes: takes the text callback to pass on to the model and the
// output to fill in (text, stop_reason, counts); returns the call's status.
using Work =
    std::function<paligemma::Status(const paligemma::TextCallback& on_text, JobOutput* out)>;

class GenJob {
 public:
  enum class Phase { kQueued, kRunning, kDone };

  // Takes the model call, the stop sequences, and when the request arrived and must end.
  GenJob(Work work, std::vector<std::string> stops, Clock::time_point arrival,
         Clock::time_point deadline);

  // Runs the work on the calling (worker) thread, unless cancelled while queued.
  void run();

  // Handler side. Waits until there is new text, the job is done, or `until`; appends the
  // new text to *text (may be null) and returns the phase at that moment.
  Phase wait(Clock::time_point until, std::string* text);
  // Asks the job to stop at its next token; `reason` ("disconnect", "timeout", "shutdown")
  // is kept for the log. The first reason wins.
  void cancel(const char* reason);

  // Valid once wait() returned kDone.
  const paligemma::Status& status() const { return status_; }
  const JobOutput& output() const { return output_; }
  // Why it was cancelled ("" if not), seconds queued, and seconds from arrival to the first
  // token (-1 if none came).
  std::string cancel_reason() const;
  double queue_s() const;
  double ttft_s() const;

 private:
  bool on_text(std::string_view piece);

  Work work_;
  StopMatcher stops_;
  const Clock::time_point arrival_, deadline_;
  std::atomic<bool> cancelled_{false};

  mutable std::mutex mutex_;
  std::condition_variable cv_;
  Phase phase_ = Phase::kQueued;
  std::string fresh_;  // text not yet taken by wait()
  std::string cancel_reason_;
  double queue_s_ = 0;
  double ttft_s_ = -1;
  paligemma::Status status_;
  JobOutput output_;
};

}  // namespace pgserve
