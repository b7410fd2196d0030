#include "base/parallel.h"

#include <omp.h>

#include <algorithm>
#include <atomic>

namespace pg {

void set_num_threads(int n) {
  if (n <= 0) n = omp_get_num_procs();
  omp_set_num_threads(n);
}

int num_threads() { return omp_get_max_threads(); }

void parallel_for(int64_t n, int64_t grain, const std::function<void(int64_t, int64_t)>& fn) {
  if (n <= 0) return;
  grain = std::max<int64_t>(grain, 1);
  const int64_t max_chunks = (n + grain - 1) / grain;
  const int threads = static_cast<int>(std::min<int64_t>(num_threads(), max_chunks));
  if (threads <= 1 || omp_in_parallel()) {
    fn(0, n);
    return;
  }
#pragma omp parallel num_threads(threads)
  {
    const int t = omp_get_thread_num();
    const int nt = omp_get_num_threads();
    const int64_t begin = n * t / nt;
    const int64_t end = n * (t + 1) / nt;
    if (begin < end) fn(begin, end);
  }
}

void parallel_chunks(int64_t n, int64_t chunks, const std::function<void(int64_t, int64_t)>& fn) {
  if (n <= 0) return;
  chunks = std::clamp<int64_t>(chunks, 1, n);
  const int threads = static_cast<int>(std::min<int64_t>(num_threads(), chunks));
  if (threads <= 1 || omp_in_parallel()) {
    fn(0, n);
    return;
  }
#pragma omp parallel for num_threads(threads) schedule(dynamic, 1)
  for (int64_t c = 0; c < chunks; ++c) {
    const int64_t begin = n * c / chunks, end = n * (c + 1) / chunks;
    if (begin < end) fn(begin, end);
  }
}

void parallel_claims(int64_t n, int64_t tail, int64_t min_chunk, int64_t max_chunk,
                     const std::function<void(int64_t, int64_t)>& fn) {
  if (n <= 0) return;
  tail = std::clamp<int64_t>(tail, 0, n);
  min_chunk = std::max<int64_t>(min_chunk, 1);
  max_chunk = std::max(max_chunk, min_chunk);
  const int threads =
      static_cast<int>(std::min<int64_t>(num_threads(), (n + min_chunk - 1) / min_chunk));
  if (threads <= 1 || omp_in_parallel()) {
    fn(0, n);
    return;
  }
  const int64_t bulk = n - tail, share = (bulk + threads - 1) / threads;
  std::atomic<int64_t> next{0};
#pragma omp parallel num_threads(threads)
  {
    const int nt = omp_get_num_threads();
    int64_t begin = next.load(std::memory_order_relaxed);
    while (begin < n) {
      const int64_t end = begin < bulk
                              ? std::min(bulk, begin + share)
                              : std::min(n, begin + std::clamp<int64_t>((n - begin) / (2 * nt),
                                                                        min_chunk, max_chunk));
      if (next.compare_exchange_weak(begin, end, std::memory_order_relaxed)) {
        fn(begin, end);
        begin = next.load(std::memory_order_relaxed);
      }
    }
  }
}

}  // namespace pg
