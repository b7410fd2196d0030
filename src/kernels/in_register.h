// Keeping a loaded vector in a register: an empty asm statement the compiler cannot see
// through. Left to itself, GCC folds a load into every instruction that uses the value
// (an FMA or vpdpbusd per row of a tile, each nibble of a q4 run), and loops that reuse a
// vector become bound by load ports instead of arithmetic.
#pragma once

namespace pg::kernels {

template <class V>
inline void in_register(V& v) {
  asm("" : "+v"(v));
}

}  // namespace pg::kernels
