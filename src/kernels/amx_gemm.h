// The prefill products on AMX tiles (Intel Sapphire Rapids and later): activations rounded
// to bf16, products summed in float32 by tdpbf16ps; bf16 weights read as a checkpoint
// stores them (row-major [n, k]; each call copies 32 rows at a time into tiles on their
// way through L2, no other copy), q8 and q4 weights dequantized to bf16 the same way
// (amx_dequant.h). Internal to the kernels layer; model code reaches it through
// KernelTable::matmul, matmul_many, matmul_gelu_mul and attention, which take it before the
// AVX-512 products (bf16_gemm.h, quant_gemm.h) wherever amx_products_run().
#pragma once

#include <cstdint>

#include "kernels/kernels.h"

namespace pg::kernels {

// Whether the products below run: this build has them (compiled for AMX) and the process
// may use the tiles (pg::amx_enabled()).
bool amx_products_run();

// out[i].y[m, n_i] = bf16(x)[m, k] W_i^T (+ out[i].bias) for i < count, every W_i [n_i, k]
// of one format: bf16, or q8 / q4 dequantized to bf16 (code times scale in float32, rounded
// to nearest even); x packed once for all of them. x is rounded to nearest even; each
// output sums its products in float32, 32 columns of K per tile product, in order of k
// (quantized: in the order of their slots, amx_dequant.h), whatever the other rows,
// columns and matrices. Returns false, writing nothing, where it cannot run: no AMX in this
// build or process (amx_products_run()), or matrices not all of one of those formats with
// k columns.
bool gemm_bf16_amx(const float* x, int64_t m, int64_t k, const MatmulOutput* out, int count);

// y[m, n] = gelu_tanh(x gate^T) * (x up^T), gate and up [n, k] of one shape and format: the
// values of gemm_bf16_amx over both followed by gelu_tanh_mul, bit for bit, each tile of
// gate's outputs gated by up's while both are in cache. Returns false, writing nothing,
// where gemm_bf16_amx would or where up's shape differs from gate's.
bool gemm_bf16_amx_gelu_mul(const float* x, int64_t m, const MatrixView& gate, const MatrixView& up,
                            float* y);

// y[m, down.rows] = (gelu_tanh(x gate^T) * (x up^T)) down^T: the values of
// gemm_bf16_amx_gelu_mul followed by gemm_bf16_amx with down, bit for bit, the gated
// activations going from one product to the next already rounded and packed (in the order
// of down's K, or of its slots where down is q8 / q4), never to memory as float32. Returns
// false, writing nothing, where either of those would.
bool gemm_bf16_amx_mlp(const float* x, int64_t m, const MatrixView& gate, const MatrixView& up,
                       const MatrixView& down, float* y);

// Flash attention's two products (fast.cc, bf16 products) on tiles, 32 query rows at a
// time (two tiles of 16, so that four sums run side by side), float32 sums. Scores:
// s[r * lds + 16 b + j] = sum_d q[r * ldq + d] k_bj[d] for r < 32, b < blocks, j < 16; dd
// a multiple of 32 (the keys' dims zero-padded to it), q bf16 with zeros past the real dims
// up to dd <= ldq; kt the key blocks one after another, each [dd / 2 pairs][16 keys][2].
void amx_attention_scores(const uint16_t* q, int64_t ldq, const uint16_t* kt, int64_t dd,
                          int64_t blocks, float* s, int64_t lds);
// Outputs: o[r * ldo + d] += sum_j p[r * ldp + j] v_j[d] for r < 32, d < dd, j < keys; p
// bf16 with zeros from `keys` to the next multiple of 32; vt [pairs][ldv][2] from key 0
// (pair i: keys 2i and 2i + 1 side by side per dim), ldv >= dd rounded up to 16 (a multiple
// of 16 keeps the tiles' rows on whole cache lines), finite for every pair those 32-key
// steps reach. ldo >= dd rounded up to 16 too (o's columns there are read and written
// back).
void amx_attention_pv(const uint16_t* p, int64_t ldp, const uint16_t* vt, int64_t ldv, int64_t dd,
                      int64_t keys, float* o, int64_t ldo);

// For the roofline's probes (roofline.cc), on the calling thread: n rounds of four tile
// products on four accumulators from tiles that never change (2 x 2 blocks, as the
// product's; pseudo-random values, as AMX multiplies zeros faster), tdpbf16ps (a round:
// 4 x 16 x 16 x 32 multiply-adds) or tdpbusd (4 x 16 x 16 x 64). Return false, doing
// nothing, where AMX cannot run (see gemm_bf16_amx).
bool amx_bf16_loop(int64_t n);
bool amx_int8_loop(int64_t n);

// For bench/tile_loop_probe, on the calling thread: the bf16 products' own inner loop
// alone (two weight tiles and two x tiles loaded per four tdpbf16ps, no packing, prefetch
// or stores into y beside it), `jobs` times over two weight blocks of `steps` tiles (w:
// block i's step s at tile i * steps + s) by x_blocks blocks of x in pairs (x: block b's
// step s at tile b * steps + s, as the products pack it), each pair's sums stored at its
// end. Tiles are 1 KiB (512 bf16) on whole cache lines. Returns the tile products run, 0
// (doing nothing) where AMX cannot run.
int64_t amx_bf16_loop_loaded(const uint16_t* w, const uint16_t* x, int64_t steps, int64_t x_blocks,
                             int64_t jobs);
// n bf16 values as the probes' tiles hold them: a fixed pseudo-random sequence, random sign
// and mantissa, magnitudes 2^-4 to 1 (not zeros, which AMX multiplies faster).
void fill_probe_values(uint16_t* out, int64_t n);

}  // namespace pg::kernels
