// Quantized weights (q8 I8, q4 U8) as bf16 for the AMX tiles' products (amx_gemm.cc), in
// the order their bytes are stored. Internal to the kernels layer.
//
// A row's blocks are stored in groups of 16 (the last of n <= 16), each group's codes in 8
// runs of 4n: run v holds codes 4v..4v+3 of each of the group's blocks (q8: run v is the
// group's bytes [4nv, 4n(v + 1)); q4: the low nibbles of its byte run v for v < 4, the
// high nibbles of byte run v - 4 for v >= 4; tensor.h). Slot u of a row is the u-th code
// in that order, so its column is
//   column(u) = 32 (g0 + j) + 4v + c   for u = 32 g0 + 4n v + 4j + c,
// g0 the group's first block. A product over K may take the columns in any order if
// both sides take the same: the weights' slots are dequantized in the order they lie, with
// the scale of each code's block (a fixed pattern per run), and x is packed in the same
// order (column(u) for slot u), so no transposition of weight bytes is needed.
#pragma once

#include <cstdint>

#include "tensor/tensor.h"

namespace pg::kernels {

// The column of slot u (0 <= u < 32 nb) in a row of nb blocks.
int64_t quant_slot_column(int64_t nb, int64_t u);

// out[u - 32 b0] = bf16(w[row, column(u)]) (nearest even; code times its block's scale in
// float32) for the slots of blocks [b0, b1) of a row, b0 a multiple of 16 (a group's
// first) and b1 a group's end or the row's. w is I8 or U8. Short last blocks' padding
// gives 0.
void dequantize_slots_bf16(const MatrixView& w, int64_t row, int64_t b0, int64_t b1, uint16_t* out);

}  // namespace pg::kernels
