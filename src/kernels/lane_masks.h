// Masks of a vector's first n lanes, for the loads and stores at the ragged end of a row,
// a block or a group: none for n <= 0, every lane for n at or past the width.
#pragma once

#include <cstdint>

namespace pg::kernels {

// 16 lanes (floats, int32s; a __mmask16).
constexpr uint16_t first_n16(int64_t n) {
  return n >= 16 ? uint16_t{0xffff} : n <= 0 ? uint16_t{0} : static_cast<uint16_t>((1u << n) - 1);
}

// 32 lanes (bf16s; a __mmask32).
constexpr uint32_t first_n32(int64_t n) {
  return n >= 32 ? ~uint32_t{0} : n <= 0 ? uint32_t{0} : (uint32_t{1} << n) - 1;
}

static_assert(first_n16(0) == 0 && first_n16(3) == 0x7 && first_n16(16) == 0xffff &&
              first_n16(40) == 0xffff && first_n16(-5) == 0);
static_assert(first_n32(31) == 0x7fffffffu && first_n32(32) == 0xffffffffu);

}  // namespace pg::kernels
