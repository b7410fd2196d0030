// Keeping a loaded vector in a register: an empty asm statement the compiler cannot see
// through. Left to itself, GCC folds a load into every instruction that uses the value
// (an FMA or vpdpbusd per row of a tile, each nibble of a q4 run), and loops that reuse a
// vector become bound by load ports instead of arithmetic.
#pragma once

#include <cstddef>

namespace pg::kernels {

// The widest vector register this build targets: a wider vector (a 64-byte vector type
// without AVX-512, in a build for a generic x86-64) lives in several registers or in
// memory, and the asm below could not name it.
#if defined(__AVX512F__)
inline constexpr std::size_t kVectorRegisterBytes = 64;
#elif defined(__AVX__)
inline constexpr std::size_t kVectorRegisterBytes = 32;
#else
inline constexpr std::size_t kVectorRegisterBytes = 16;
#endif

template <class V>
inline void in_register(V& v) {
  if constexpr (sizeof(V) <= kVectorRegisterBytes) asm("" : "+v"(v));
}

}  // namespace pg::kernels
