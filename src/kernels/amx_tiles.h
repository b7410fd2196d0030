// What the AMX products share (amx_gemm.cc, amx_w8a8.cc): the tile configuration and the
// threads' growing buffers. Internal to the kernels layer; only for files compiled with
// AMX (see the #if there).
#pragma once

#include <immintrin.h>

#include <cstdint>

#include "base/memory.h"
#include "kernels/transpose.h"

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

#if defined(__AVX512F__)
// One packed tile of x from 16 rows: rows row0..row0+15 of a matrix of 32-bit words whose
// rows lie row_bytes apart (zeros from row m on), word index[j] of each, transposed so
// that the tile's row j holds word index[j] of the 16 rows (lane r: row row0 + r). The
// products' packing of x: bf16 pairs (amx_gemm.cc) or int8 quads (amx_w8a8.cc).
inline void gather_tile(const void* rows, int64_t row_bytes, int64_t row0, int64_t m, __m512i index,
                        void* tile) {
  __m512i v[16];
  for (int r = 0; r < 16; ++r) {
    const int64_t row = row0 + r;
    v[r] = row < m
               ? _mm512_i32gather_epi32(index, static_cast<const char*>(rows) + row * row_bytes, 4)
               : _mm512_setzero_si512();
  }
  transpose16(v);  // v[j] lane r = row r's word index[j]
  auto* out = static_cast<int32_t*>(tile);
  for (int j = 0; j < 16; ++j) _mm512_store_si512(out + 16 * j, v[j]);
}
#endif

}  // namespace pg::kernels::amx
