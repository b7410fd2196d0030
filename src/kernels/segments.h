// Splitting one range of work items that runs over several matrices in turn (the products
// of KernelTable::matmul_many) into each matrix's part.
#pragma once

#include <algorithm>
#include <cstdint>

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

}  // namespace pg::kernels
