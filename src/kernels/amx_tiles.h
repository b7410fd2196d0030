// What the AMX products share (amx_gemm.cc, amx_w8a8.cc): the tile configuration and the
// threads' growing buffers. Internal to the kernels layer; only for files compiled with
// AMX (see the #if there).
#pragma once

#include <cstdint>

#include "base/memory.h"

namespace pg::kernels::amx {

constexpr int64_t kT = 16;  // rows of a tile

struct alignas(64) TileConfig {
  uint8_t palette = 1;
  uint8_t start_row = 0;
  uint8_t reserved[14] = {};
  uint16_t colsb[16] = {};  // bytes per row of each tile
  uint8_t rows[16] = {};
};

// Eight tiles of 16 rows of 64 bytes, on the calling thread.
inline void configure_tiles() {
  TileConfig config;
  for (int t = 0; t < 8; ++t) {
    config.colsb[t] = 64;
    config.rows[t] = kT;
  }
  // (Through asm with the config as its memory operand: GCC 12 treats _tile_loadconfig as
  // not reading its argument and drops the stores that fill it, leaving every tile
  // unconfigured, whose first load then faults.)
  asm volatile("ldtilecfg %0" : : "m"(config));
}

// A thread's growing buffer (on whole cache lines, as tiles and vector stores want it),
// holding at least `count` elements.
template <class T>
T* at_least(LineAlignedVector<T>& buffer, int64_t count) {
  if (buffer.size() < static_cast<size_t>(count)) buffer.resize(static_cast<size_t>(count));
  return buffer.data();
}

}  // namespace pg::kernels::amx
