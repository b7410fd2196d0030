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

}  // namespace pg
