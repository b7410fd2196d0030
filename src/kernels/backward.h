// Backward kernels: the gradients of the forward ops of kernels.h, for training.
//
// Conventions follow kernels.h: activations float32 row-major; weights MatrixViews in
// their stored dtype, in PyTorch Linear layout W[out, in] (y = x W^T + b). Every
// gradient is accumulated in float32. Functions that take `accumulate` add into their
// output when it is true and overwrite it otherwise; parameter gradients (dw, db,
// dgamma, ...) are always added to, so one buffer sums the contributions of several
// examples. A null parameter-gradient pointer skips that gradient.
//
// backward_reference.cc holds the definitions (plain loops, split over rows with
// parallel_for, each output element summed by one thread in index order, so results do
// not depend on the thread count). backward_fast.cc routes the two big products through
// the forward matmul of the fast table.
#pragma once

#include <cstdint>

#include "kernels/kernels.h"
#include "tensor/tensor.h"

namespace pg::kernels {

// ---- Linear: y[m, n] = x[m, k] W^T (+ b), W: [n, k] ----

// dx[m, k] (+)= dy[m, n] W[n, k].
void matmul_backward_input(const float* dy, int64_t m, const MatrixView& w, float* dx,
                           bool accumulate);
// dw[n, k] += dy[m, n]^T x[m, k]; db[n] += sum_i dy[i, :] (db may be null).
void matmul_backward_weight(const float* dy, const float* x, int64_t m, int64_t n, int64_t k,
                            float* dw, float* db);

// The same two products through the fast forward matmul (transposed copies of the
// operands, then kernels::fast_kernels().matmul). Same results up to float32 reordering.
void matmul_backward_input_fast(const float* dy, int64_t m, const MatrixView& w, float* dx,
                                bool accumulate);
void matmul_backward_weight_fast(const float* dy, const float* x, int64_t m, int64_t n, int64_t k,
                                 float* dw, float* db);

// ---- Normalisation ----

// LayerNorm (biased variance). x: [rows, dim] (the forward's input), dy: [rows, dim],
// gamma: [dim] -> dx: [rows, dim] (+)=; dgamma, dbeta: [dim] +=.
void layer_norm_backward(const float* x, const float* dy, int64_t rows, int64_t dim,
                         const float* gamma, float eps, float* dx, float* dgamma, float* dbeta,
                         bool accumulate);
// Gemma RMSNorm y = x r (1 + w), r = rsqrt(mean(x^2) + eps). x, dy: [rows, dim], w: [dim]
// -> dx: [rows, dim] (+)=; dw: [dim] +=.
void rms_norm_backward(const float* x, const float* dy, int64_t rows, int64_t dim,
                       const float* weight, float eps, float* dx, float* dweight, bool accumulate);

// ---- Elementwise ----

// y = gelu_tanh(x). x, dy, dx: [n]; dx = dy * gelu'(x) (dx may alias dy).
void gelu_tanh_backward(const float* x, const float* dy, float* dx, int64_t n);
// y = gelu_tanh(gate) * up. gate, up, dy: [n] -> dgate = dy up gelu'(gate), dup = dy gelu(gate).
void gelu_tanh_mul_backward(const float* gate, const float* up, const float* dy, float* dgate,
                            float* dup, int64_t n);
// y = cap tanh(x / cap). y (the capped output), dy: [n] -> dx = dy (1 - (y/cap)^2).
// dx may alias dy.
void softcap_backward(const float* y, const float* dy, float* dx, int64_t n, float cap);
// The inverse rotation of kernels.h's rope (its transpose): dx rows rotated by -angle,
// in place. dx: rows of `stride` floats, num_heads heads of head_dim; positions: [rows].
void rope_backward(float* dx, int64_t rows, int64_t stride, int64_t num_heads, int64_t head_dim,
                   const int64_t* positions, float theta);

// ---- Attention ----

// The forward of kernels.h's attention that also keeps the probabilities.
// q: [T, q_stride], k, v: [S, kv_stride] -> out: [T, out_stride],
// probs: [Hq, T, S] (softmax rows; 0 where masked; a query seeing no key gets zeros).
void attention_forward(const AttentionParams& p, const float* q, const float* k, const float* v,
                       float* out, float* probs);
// Gradients of attention given dout: [T, out_stride] and the forward's probs.
// dq: [T, q_stride] (overwritten, the Hq*D used columns), dk, dv: [S, kv_stride]
// (overwritten, the Hkv*D used columns). Soft-capping and masks as in the forward.
void attention_backward(const AttentionParams& p, const float* q, const float* k, const float* v,
                        const float* probs, const float* dout, float* dq, float* dk, float* dv);

}  // namespace pg::kernels
