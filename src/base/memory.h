// Process-wide allocator settings for inference and training.
#pragma once

#include <cstddef>
#include <cstdint>
#include <new>
#include <vector>

namespace pg {

// Keeps freed activation buffers in the heap for reuse. A forward pass allocates and frees
// tensors of megabytes per layer; glibc would hand each one back to the kernel (munmap or
// trim) and the next layer would fault every page in again, which on a VM costs more than
// the arithmetic (measured: 2.6 s of PaliGemma 3B's 7.5 s first token). keep_bytes (at most
// 1 GiB) bounds the free memory kept: what is kept counts in the resident set. The last
// call's settings hold.
void keep_freed_memory(int64_t keep_bytes = int64_t{1} << 30);

// Allocates `bytes` on a 64-byte boundary. On x86-64 Linux (and not under AddressSanitizer,
// which then keeps checking the bounds), buffers of kHugePageMin bytes or more are mapped
// on their own on a 2 MiB boundary, and their whole 2 MiB pages are offered to the kernel
// as transparent huge pages (madvise; the tail stays in small pages, so no memory is
// wasted): filling gigabytes of weights then takes one page fault per 2 MiB instead of per
// 4 KiB, which on this virtual machine cut the load of PaliGemma 3B's converted weights
// 2-8x (bench, bf16 random weights: 25.7 -> 3.0-12.8 s).
constexpr size_t kHugePageMin = size_t{4} << 20;
void* allocate_lines(size_t bytes);
// p from allocate_lines(bytes).
void free_lines(void* p, size_t bytes) noexcept;

// Allocates on 64-byte (cache line) boundaries. Weight matrices live in such buffers: a
// kernel's 64-byte vector load that straddles two lines costs two accesses, and on a
// stream of them the read falls by about a quarter (measured on Zen 4: ~58 -> ~43 GB/s).
template <class T>
struct LineAlignedAllocator {
  using value_type = T;
  static constexpr std::align_val_t kAlign{64};
  LineAlignedAllocator() = default;
  template <class U>
  LineAlignedAllocator(const LineAlignedAllocator<U>&) noexcept {}  // NOLINT: rebinding
  T* allocate(size_t n) { return static_cast<T*>(allocate_lines(n * sizeof(T))); }
  void deallocate(T* p, size_t n) noexcept { free_lines(p, n * sizeof(T)); }
  template <class U>
  bool operator==(const LineAlignedAllocator<U>&) const noexcept {
    return true;
  }
};
template <class T>
using LineAlignedVector = std::vector<T, LineAlignedAllocator<T>>;

}  // namespace pg
