// Splitting the columns of several matrices that share one x (the products of
// KernelTable::matmul_many) over the threads as one range.
#pragma once

#include <algorithm>
#include <cstdint>
#include <vector>

#include "base/parallel.h"
#include "kernels/kernels.h"

namespace pg::kernels {

// Items [i0, i1) of segments laid end to end (segment s has sizes[s] items): calls
// f(s, a, b) for each segment's items [a, b) (counted from its start) in the range.
template <class F>
void for_each_segment(const int64_t* sizes, int count, int64_t i0, int64_t i1, F&& f) {
  int64_t base = 0;
  for (int s = 0; s < count; ++s) {
    const int64_t a = std::max(i0, base), b = std::min(i1, base + sizes[s]);
    if (a < b) f(s, a - base, b - base);
    base += sizes[s];
  }
}

// Matrix i's groups of `group` columns (out[i].w.rows), and their sum.
inline std::vector<int64_t> column_groups(const MatmulOutput* out, int count, int64_t group,
                                          int64_t* total) {
  std::vector<int64_t> groups(static_cast<size_t>(count));
  *total = 0;
  for (int i = 0; i < count; ++i) {
    groups[static_cast<size_t>(i)] = (out[i].w.rows + group - 1) / group;
    *total += groups[static_cast<size_t>(i)];
  }
  return groups;
}

// Each matrix's columns (out[i].w.rows) in groups of `group`, all the matrices' groups
// split evenly over the threads: fn(i, g0, g1) for matrix i's groups [g0, g1) in a
// thread's share.
template <class F>
void parallel_column_groups(const MatmulOutput* out, int count, int64_t group, F&& fn) {
  int64_t total = 0;
  const std::vector<int64_t> groups = column_groups(out, count, group, &total);
  parallel_for(total, 1,
               [&](int64_t i0, int64_t i1) { for_each_segment(groups.data(), count, i0, i1, fn); });
}

// The same groups, claimed by the threads (pg::parallel_claims): all but the last
// 1/16 in even shares, then the rest in chunks of at most max_groups, smaller as the end
// nears, so that the threads end together though one of them is slowed. fn(i, g0, g1) for
// each matrix's part of a claim. (Even shares alone left each thread idle 0.9-2.3% of the
// int8 products' time, waiting for the other, in bench paligemma-3b-224 with 2 threads.
// Claiming everything in chunks of at most 4 panels cut that to 0.4-0.6%, but each claim
// starts with a panel copied from memory while nothing else runs. Two Gemma layers'
// products, alternating in one process: the last 1/16 claimed 1.3-1.7% faster than all,
// 0.9% faster than even shares alone; 1/8 and 1/32 within 0.3% of 1/16.)
template <class F>
void claim_column_groups(const MatmulOutput* out, int count, int64_t group, int64_t max_groups,
                         F&& fn) {
  int64_t total = 0;
  const std::vector<int64_t> groups = column_groups(out, count, group, &total);
  parallel_claims(total, total / 16, 1, max_groups, [&](int64_t i0, int64_t i1) {
    for_each_segment(groups.data(), count, i0, i1, fn);
  });
}

}  // namespace pg::kernels
