#include "base/memory.h"

#include <algorithm>
#include <cstdint>
#include <cstdlib>  // defines __GLIBC__ where glibc is the C library

#if defined(__GLIBC__)
#include <malloc.h>
#endif
#if defined(__linux__) && defined(__x86_64__)
#include <sys/mman.h>
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

#if defined(__SANITIZE_ADDRESS__)
#define PG_HUGE_PAGES 0  // ASan checks the bounds of heap blocks, not of mappings
#elif defined(__linux__) && defined(__x86_64__)
#define PG_HUGE_PAGES 1
#else
#define PG_HUGE_PAGES 0
#endif

#if PG_HUGE_PAGES
namespace {
constexpr size_t kHugePage = size_t{2} << 20;
constexpr size_t kPage = 4096;  // x86-64's base page
size_t round_up(size_t n, size_t to) { return (n + to - 1) / to * to; }
}  // namespace

void* allocate_lines(size_t bytes) {
  if (bytes < kHugePageMin) return ::operator new (bytes, std::align_val_t{64});
  if (bytes > SIZE_MAX / 2) throw std::bad_alloc();
  // Map one huge page more than needed, then unmap what lies before the first 2 MiB
  // boundary and after the buffer's last 4 KiB page.
  const size_t len = round_up(bytes, kPage);
  void* raw =
      mmap(nullptr, len + kHugePage, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
  if (raw == MAP_FAILED) throw std::bad_alloc();
  const auto start = reinterpret_cast<uintptr_t>(raw);
  const size_t head = round_up(start, kHugePage) - start;  // bytes before the boundary
  char* p = static_cast<char*>(raw) + head;
  if (head > 0) munmap(raw, head);
  munmap(p + len, kHugePage - head);  // > 0: head < kHugePage
  // (Advice only: without THP the buffer is plain 4 KiB pages.)
  if (len >= kHugePage) madvise(p, len / kHugePage * kHugePage, MADV_HUGEPAGE);
  return p;
}

void free_lines(void* p, size_t bytes) noexcept {
  if (p == nullptr) return;
  if (bytes < kHugePageMin) {
    ::operator delete (p, std::align_val_t{64});
    return;
  }
  munmap(p, round_up(bytes, kPage));
}
#else
void* allocate_lines(size_t bytes) { return ::operator new (bytes, std::align_val_t{64}); }
void free_lines(void* p, size_t) noexcept { ::operator delete (p, std::align_val_t{64}); }
#endif

}  // namespace pg
