#include "base/memory.h"

#include <algorithm>
#include <cstdlib>  // defines __GLIBC__ where glibc is the C library

#if defined(__GLIBC__)
#include <malloc.h>
#endif

namespace pg {

void keep_freed_memory(int64_t keep_bytes) {
#if defined(__GLIBC__)
  // Blocks up to 32 MiB (glibc's largest threshold; a layer's activations at 224 px) come
  // from the heap, so they are reused; the heap keeps up to keep_bytes of free space at its
  // top instead of trimming it, and grows keep_bytes / 4 at a time.
  const int keep = static_cast<int>(std::min<int64_t>(keep_bytes, int64_t{1} << 30));
  mallopt(M_MMAP_THRESHOLD, 32 << 20);
  mallopt(M_TRIM_THRESHOLD, keep);
  mallopt(M_TOP_PAD, keep / 4);
#else
  (void)keep_bytes;
#endif
}

}  // namespace pg
