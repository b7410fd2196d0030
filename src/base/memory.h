// Process-wide allocator settings for inference and training.
#pragma once

#include <cstdint>

namespace pg {

// Keeps freed activation buffers in the heap for reuse. A forward pass allocates and frees
// tensors of megabytes per layer; glibc would hand each one back to the kernel (munmap or
// trim) and the next layer would fault every page in again, which on a VM costs more than
// the arithmetic (measured: 2.6 s of PaliGemma 3B's 7.5 s first token). keep_bytes (at most
// 1 GiB) bounds the free memory kept: what is kept counts in the resident set. The last
// call's settings hold.
void keep_freed_memory(int64_t keep_bytes = int64_t{1} << 30);

}  // namespace pg
