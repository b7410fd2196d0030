#include "queue.h"

#include <algorithm>

namespace pgserve {

WorkQueue::WorkQueue(int workers, int max_queue, std::function<void()> worker_init)
    : max_queue_(std::max(0, max_queue)), worker_init_(std::move(worker_init)) {
  const int n = std::max(1, workers);
  threads_.reserve(n);
  for (int i = 0; i < n; ++i) threads_.emplace_back([this] { loop(); });
}

WorkQueue::~WorkQueue() {
  {
    std::lock_guard<std::mutex> lock(mutex_);
    stopping_ = true;
  }
  cv_.notify_all();
  for (std::thread& t : threads_) t.join();
}

bool WorkQueue::submit(Job job) {
  {
    std::lock_guard<std::mutex> lock(mutex_);
    if (stopping_) return false;
    // Jobs on a worker plus jobs waiting stay within workers + max_queue.
    if (static_cast<int>(jobs_.size()) + running_ >=
        static_cast<int>(threads_.size()) + max_queue_) {
      return false;
    }
    jobs_.push_back(std::move(job));
  }
  cv_.notify_one();
  return true;
}

int WorkQueue::queued() const {
  std::lock_guard<std::mutex> lock(mutex_);
  // Jobs that an idle worker is about to take do not count as waiting.
  const int idle = static_cast<int>(threads_.size()) - running_;
  return std::max(0, static_cast<int>(jobs_.size()) - idle);
}

int WorkQueue::running() const {
  std::lock_guard<std::mutex> lock(mutex_);
  return running_;
}

void WorkQueue::loop() {
  if (worker_init_) worker_init_();
  while (true) {
    Job job;
    {
      std::unique_lock<std::mutex> lock(mutex_);
      cv_.wait(lock, [this] { return stopping_ || !jobs_.empty(); });
      if (jobs_.empty()) return;  // stopping, nothing left
      job = std::move(jobs_.front());
      jobs_.pop_front();
      ++running_;
    }
    try {
      job();
    } catch (...) {
      // A job reports its own errors; nothing escapes a worker.
    }
    {
      std::lock_guard<std::mutex> lock(mutex_);
      --running_;
    }
  }
}

}  // namespace pgserve
