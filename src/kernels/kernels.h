// The kernel interface: every numeric op the model needs, with no model knowledge.
//
// Each op exists as a plain reference version (scalar loops, the definition) and a
// fast version; both fill the same KernelTable, and tests run one body against every
// table. Model code calls kernels() and never names an implementation.
//
// Conventions: activations are float32, row-major, contiguous unless a stride is
// given; weights are MatrixViews in their stored dtype (F32, BF16 or F16), read in
// PyTorch Linear layout W[out, in], so y = x W^T (+ b). All accumulation is float32.
#pragma once

#include <cstdint>

#include "tensor/tensor.h"

namespace pg::kernels {

// Which keys each query of attention may see.
struct AttentionParams {
  int64_t num_queries = 0;   // T
  int64_t num_keys = 0;      // S: keys 0..S-1 are valid
  int64_t num_heads = 0;     // Hq
  int64_t num_kv_heads = 0;  // Hkv; query head h reads kv head h / (Hq / Hkv)
  int64_t head_dim = 0;      // D
  int64_t q_stride = 0;      // floats between query rows (>= Hq * D)
  int64_t kv_stride = 0;     // floats between key (and value) rows (>= Hkv * D)
  int64_t out_stride = 0;    // floats between output rows (>= Hq * D)
  // Query t sits at key index i = query_offset + t. With causal masking, key j is
  // visible iff j < prefix_len (the bidirectional prefix) or j <= i. Without it,
  // every key is visible.
  int64_t query_offset = 0;
  int64_t prefix_len = 0;
  bool causal = false;
  // > 0: key j is visible to query i only if i - j < sliding_window (on top of the above).
  int64_t sliding_window = 0;
  float scale = 1.0f;    // scores = (q . k) * scale
  float softcap = 0.0f;  // > 0: scores = softcap * tanh(scores / softcap), before masking
  // Allows q, k, the probabilities and v to be rounded to bf16 for the products (sums stay
  // float32), as the matrix products of the low-precision modes do. The reference ignores it.
  bool low_precision = false;
  // k and v hold bf16 values (uint16_t bit patterns; kv_stride counts them), not float32:
  // the low-precision modes' KV cache. Each is read as the float32 it represents.
  bool kv_bf16 = false;
};

// One of several products of the same x (KernelTable::matmul_many).
struct MatmulOutput {
  MatrixView w;                 // [n, k]
  const float* bias = nullptr;  // [n] or null
  float* y = nullptr;           // [m, n]; must not alias x or another output
};

struct KernelTable {
  const char* name;

  // y[m, w.rows] = x[m, w.cols] W^T (+ bias[w.rows] if bias != nullptr). y must not alias x.
  // W in any MatrixView format (F32, BF16, F16, q8 I8, q4 U8). Float32 arithmetic except
  // where the weights allow lower precision: quantized weights (activations quantized to
  // int8 per block of 32 and int8 x int8 block sums: step amax / 127 for m <= 8, and for
  // prefill-sized m on AVX512-VNNI steps a power of two apart within a row, at most twice
  // amax / 127 for blocks within 2^-12 of the row's largest (quant_gemm.h); without VNNI,
  // prefill activations rounded to bf16; on AMX tiles (m >= 16, amx_gemm.h) activations
  // rounded to bf16 times the weights dequantized to bf16, but q8 with one scale per row
  // (row_scales, the w8a8 mode; amx_w8a8.h) on int8 tiles with activations quantized to
  // int8 per row, step amax / 127)
  // and views marked low_precision (activations rounded to bf16 for prefill-sized m).
  void (*matmul)(const float* x, int64_t m, const MatrixView& w, const float* bias, float* y);

  // out[i].y = x out[i].w^T (+ out[i].bias) for i < count, every w with x's k columns: the
  // values of `count` matmul calls, bit for bit. Where a product packs x (prefill sizes),
  // matrices of one format share one packing, and the threads split all their columns
  // together (attention's q, k and v; the MLP's gate and up).
  void (*matmul_many)(const float* x, int64_t m, const MatmulOutput* out, int count);

  // y[m, n] = gelu_tanh(x gate^T) * (x up^T), gate and up [n, k] of one format (the Gemma
  // MLP's gating): the values of matmul_many over both followed by gelu_tanh_mul, bit for
  // bit. Where a product applies the gating to its outputs while they are in cache (bf16
  // low precision, quantized weights on VNNI, prefill sizes), neither [m, n] product
  // reaches memory; elsewhere up's product goes to a buffer of the op's own.
  void (*matmul_gelu_mul)(const float* x, int64_t m, const MatrixView& gate, const MatrixView& up,
                          float* y);

  // y[m, down.rows] = (gelu_tanh(x gate^T) * (x up^T)) down^T (the Gemma MLP): the values
  // of matmul_gelu_mul into `hidden` [m, gate.rows] followed by matmul of hidden with down,
  // bit for bit. hidden is the op's scratch: where the gated activations go from one
  // product to the next already packed (bf16 low precision, prefill sizes), it holds no
  // defined value afterwards; elsewhere it holds them.
  void (*mlp)(const float* x, int64_t m, const MatrixView& gate, const MatrixView& up,
              const MatrixView& down, float* hidden, float* y);

  // LayerNorm over the last dim (biased variance): y = (x - mean) / sqrt(var + eps) * gamma + beta.
  void (*layer_norm)(const float* x, int64_t rows, int64_t dim, const float* gamma,
                     const float* beta, float eps, float* y);

  // Gemma RMSNorm: y = x * rsqrt(mean(x^2) + eps) * (1 + weight). x and y may alias.
  void (*rms_norm)(const float* x, int64_t rows, int64_t dim, const float* weight, float eps,
                   float* y);

  // y = gelu_tanh(x) = 0.5 x (1 + tanh(sqrt(2/pi) (x + 0.044715 x^3))). x and y may alias.
  void (*gelu_tanh)(const float* x, float* y, int64_t n);

  // y = gelu_tanh(gate) * up (the Gemma MLP's gating). y may alias gate or up.
  void (*gelu_tanh_mul)(const float* gate, const float* up, float* y, int64_t n);

  // In-place rotary embedding, "rotate half" layout: for each row r (stride floats apart)
  // and head h, pairs (x[i], x[i + D/2]) rotate by angle positions[r] * theta^(-2i/D),
  // with the angle computed in float32 as inv_freq = 1 / theta^(2i/D), angle = pos * inv_freq.
  void (*rope)(float* x, int64_t rows, int64_t stride, int64_t num_heads, int64_t head_dim,
               const int64_t* positions, float theta);

  // x = cap * tanh(x / cap), in place.
  void (*softcap)(float* x, int64_t n, float cap);

  // y += x.
  void (*add)(float* y, const float* x, int64_t n);

  // x *= s.
  void (*scale)(float* x, int64_t n, float s);

  // Index of the largest of x[0, n) (n >= 1), the first on ties; a NaN never compares
  // larger (so x[0] is kept if it is NaN). Greedy decoding's choice over the vocabulary.
  int64_t (*argmax)(const float* x, int64_t n);

  // out[T, Hq*D] = softmax(mask(softcap(q k^T * scale))) v per head, softmax in float32.
  // q: [T, q_stride], k and v: [S, kv_stride] of float (or bf16 where p.kv_bf16); out must
  // not alias q, k or v. Hq must be a multiple of Hkv. A query that sees no key gets zeros.
  void (*attention)(const AttentionParams& p, const float* q, const void* k, const void* v,
                    float* out);
};

const KernelTable& reference_kernels();
const KernelTable& fast_kernels();

// The table model code uses: fast_kernels() unless PG_KERNELS=reference is set in the
// environment or set_active_kernels() chose another.
const KernelTable& kernels();
void set_active_kernels(const KernelTable* table);

}  // namespace pg::kernels
