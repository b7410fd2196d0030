// One threading runtime for the whole process: OpenMP (the runtime oneDNN uses too),
// so the engine's loops and a library's never oversubscribe the cores.
#pragma once

#include <cstdint>
#include <functional>

namespace pg {

// Sets the number of threads every parallel loop uses (<= 0: all cores).
void set_num_threads(int n);
int num_threads();

// Calls fn(begin, end) on disjoint chunks covering [0, n), in parallel. Chunks hold at
// least `grain` items. fn must not throw.
void parallel_for(int64_t n, int64_t grain, const std::function<void(int64_t, int64_t)>& fn);

// Calls fn(begin, end) on `chunks` near-equal chunks of [0, n), handed out to the threads
// one at a time as they finish the last (so a thread slowed by others' work takes fewer).
void parallel_chunks(int64_t n, int64_t chunks, const std::function<void(int64_t, int64_t)>& fn);

// Calls fn(begin, end) on chunks covering [0, n) that the threads claim one after another
// from the front of what is left: the first n - tail items in one even share per thread
// (a thread that is late may find its share taken), then chunks of about 1 / (2 x threads)
// of what is left, at most max_chunk and at least min_chunk items, so that threads
// slowed by others' work (or a busier core) end together. fn must not throw.
void parallel_claims(int64_t n, int64_t tail, int64_t min_chunk, int64_t max_chunk,
                     const std::function<void(int64_t, int64_t)>& fn);

}  // namespace pg
