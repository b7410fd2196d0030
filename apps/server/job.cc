#include "job.h"

namespace pgserve {
namespace {

double seconds(Clock::duration d) { return std::chrono::duration<double>(d).count(); }

}  // namespace

GenJob::GenJob(Work work, std::vector<std::string> stops, Clock::time_point arrival,
               Clock::time_point deadline)
    : work_(std::move(work)), stops_(std::move(stops)), arrival_(arrival), deadline_(deadline) {}

bool GenJob::on_text(std::string_view piece) {
  if (cancelled_.load()) return false;
  if (Clock::now() > deadline_) {
    cancel("timeout");
    return false;
  }
  std::string shown = stops_.push(piece);
  {
    std::lock_guard<std::mutex> lock(mutex_);
    if (ttft_s_ < 0) ttft_s_ = seconds(Clock::now() - arrival_);
    if (!shown.empty()) {
      output_.text += shown;
      fresh_ += shown;
    }
  }
  if (!shown.empty()) cv_.notify_all();
  return !stops_.stopped();
}

void GenJob::run() {
  {
    std::lock_guard<std::mutex> lock(mutex_);
    queue_s_ = seconds(Clock::now() - arrival_);
    if (cancelled_.load() || Clock::now() > deadline_) {
      if (cancel_reason_.empty()) cancel_reason_ = "timeout";
      cancelled_.store(true);
      status_ =
          paligemma::Status(paligemma::StatusCode::kOutOfRange, "cancelled before it started");
      phase_ = Phase::kDone;
      cv_.notify_all();
      return;
    }
    phase_ = Phase::kRunning;
  }
  cv_.notify_all();
  JobOutput out;
  paligemma::Status st;
  try {
    st = work_([this](std::string_view piece) { return on_text(piece); }, &out);
  } catch (const std::bad_alloc&) {
    st = paligemma::Status(paligemma::StatusCode::kInternal, "out of memory");
  } catch (const std::exception& e) {
    st =
        paligemma::Status(paligemma::StatusCode::kInternal, std::string("unexpected: ") + e.what());
  }
  {
    std::lock_guard<std::mutex> lock(mutex_);
    // The text streamed through on_text is what the client saw; the rest of `out` is the
    // work's own account (counts, stop reason, task result).
    std::string streamed = std::move(output_.text);
    output_ = std::move(out);
    output_.stop_sequence = stops_.stopped();
    if (output_.stop_sequence || !cancelled_.load()) {
      std::string rest = stops_.finish();
      streamed += rest;
      fresh_ += rest;
    }
    // Without a stop sequence the model's own decode of the ids is the text (the same as
    // `generate --json`); with one, only the text before it.
    if (output_.stop_sequence || output_.text.empty()) output_.text = std::move(streamed);
    status_ = std::move(st);
    phase_ = Phase::kDone;
  }
  cv_.notify_all();
}

GenJob::Phase GenJob::wait(Clock::time_point until, std::string* text) {
  std::unique_lock<std::mutex> lock(mutex_);
  cv_.wait_until(lock, until, [&] { return !fresh_.empty() || phase_ == Phase::kDone; });
  if (text) *text += fresh_;
  fresh_.clear();
  return phase_;
}

void GenJob::cancel(const char* reason) {
  {
    std::lock_guard<std::mutex> lock(mutex_);
    if (cancel_reason_.empty()) cancel_reason_ = reason;
  }
  cancelled_.store(true);
}

std::string GenJob::cancel_reason() const {
  std::lock_guard<std::mutex> lock(mutex_);
  return cancelled_.load() ? cancel_reason_ : std::string();
}

double GenJob::queue_s() const {
  std::lock_guard<std::mutex> lock(mutex_);
  return queue_s_;
}

double GenJob::ttft_s() const {
  std::lock_guard<std::mutex> lock(mutex_);
  return ttft_s_;
}

}  // namespace pgserve
