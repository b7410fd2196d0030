#include "base/memory.h"

#include <cstdlib>  // defines __GLIBC__ where glibc is the C library

#if defined(__GLIBC__)
#include <malloc.h>
#endif

namespace pg {

void keep_freed_memory() {
#if defined(__GLIBC__)
  static const bool done = [] {
    // Blocks up to 32 MiB (glibc's largest threshold; a layer's activations at 224 px)
    // come from the heap, so they are reused, and the heap keeps up to 1 GiB of free
    // space at its top instead of trimming it.
    mallopt(M_MMAP_THRESHOLD, 32 << 20);
    mallopt(M_TRIM_THRESHOLD, 1 << 30);
    // Grow the heap 256 MiB at a time: fewer, larger extensions.
    mallopt(M_TOP_PAD, 256 << 20);
    return true;
  }();
  (void)done;
#endif
}

}  // namespace pg
