// Bounded admission for generations: a fixed set of worker threads runs jobs (at most
// `workers` at once), up to `max_queue` more wait in FIFO order, and a submit past that is
// refused at once so the caller can answer 503 with Retry-After.
#pragma once

#include <condition_variable>
#include <deque>
#include <functional>
#include <mutex>
#include <thread>
#include <vector>

namespace pgserve {

class WorkQueue {
 public:
  using Job = std::function<void()>;

  // Starts `workers` threads (at least 1), each calling `worker_init` once before its first
  // job (to set per-thread state such as the compute thread count).
  WorkQueue(int workers, int max_queue, std::function<void()> worker_init = nullptr);
  // Runs the jobs still queued, then joins the workers.
  ~WorkQueue();
  WorkQueue(const WorkQueue&) = delete;
  WorkQueue& operator=(const WorkQueue&) = delete;

  // Takes a job; returns false (and drops it) when `max_queue` jobs already wait. A job
  // that waits runs on the first free worker; it must check for itself whether its request
  // was cancelled meanwhile.
  bool submit(Job job);

  int queued() const;   // jobs waiting for a worker
  int running() const;  // jobs on a worker now
  int workers() const { return static_cast<int>(threads_.size()); }
  int max_queue() const { return max_queue_; }

 private:
  void loop();

  const int max_queue_;
  std::function<void()> worker_init_;
  mutable std::mutex mutex_;
  std::condition_variable cv_;
  std::deque<Job> jobs_;
  int running_ = 0;
  bool stopping_ = false;
  std::vector<std::thread> threads_;
};

}  // namespace pgserve
