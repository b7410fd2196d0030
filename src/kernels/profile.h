// An op profile: a KernelTable that times every call of another table and adds the time
// to one counter per op (matrix products split by weight format and by decode/prefill
// size), so `bench --profile` (and PG_PROFILE=1 in the environment of any command) shows
// where the time of a run goes.
#pragma once

#include <string>
#include <vector>

#include "kernels/kernels.h"

namespace pg::kernels {

struct OpProfile {
  std::string op;       // "matmul bf16 m>12", "attention", "gelu_tanh_mul", ...
  long long calls = 0;  // for matmul, products: one per matrix of a matmul_many call
  double seconds = 0;   // wall time inside the op, summed over calls (and threads)
};

// The table that times `inner` (one profiling table at a time: calling this again
// re-targets it). Thread-safe: counters are atomic.
const KernelTable& profiling_kernels(const KernelTable& inner);

// The counters since the last reset, busiest first; ops never called are left out.
std::vector<OpProfile> op_profile();
void reset_op_profile();

}  // namespace pg::kernels
