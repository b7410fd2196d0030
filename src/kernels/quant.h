// Block quantization of weight matrices (formats in tensor/tensor.h: I8 = q8, U8 = q4)
// and the fast matrix product for them.
#pragma once

#include <cstdint>
#include <vector>

#include "base/memory.h"
#include "tensor/tensor.h"

namespace pg::kernels {

// Storage of a quantized matrix; view() points into it.
struct QuantizedMatrix {
  DType dtype = DType::kI8;
  int64_t rows = 0, cols = 0;
  LineAlignedVector<uint8_t> data;
  LineAlignedVector<float> scales;  // [rows, quant_blocks(cols)]
  bool row_scales = false;          // q8 with one scale per row (quantize_q8_rows)
  MatrixView view() const {
    MatrixView v{dtype, data.data(), rows, cols, scales.data()};
    v.row_scales = row_scales;
    return v;
  }
};

// q8: per block of 32, scale = max|w| / 127, q = round(w / scale).
QuantizedMatrix quantize_q8(const MatrixView& w);
// q4 (ggml Q4_0 style): per block, the element of largest magnitude m maps to code 0:
// scale = m / -8, code = clamp(round(w / scale) + 8, 0, 15).
QuantizedMatrix quantize_q4(const MatrixView& w);
// q8 with one scale per row (per output channel, the w8a8 mode): scale = max|w_row| / 127,
// q = round(w / scale), stored as q8 whose blocks of a row all carry the row's scale (so
// every q8 product reads it), with row_scales set.
QuantizedMatrix quantize_q8_rows(const MatrixView& w);
// The same (dtype kI8 or kU8; row_scales for quantize_q8_rows) block by block in plain
// scalar code: the reference twin of quantize_q8 / quantize_q4 / quantize_q8_rows, whose
// whole blocks run in vector registers. For tests.
QuantizedMatrix quantize_reference(const MatrixView& w, DType dtype, bool row_scales = false);
// Whether w is q8 whose blocks of each row share one scale (a folder's row-scaled weights,
// recognized at load).
bool has_row_scales(const MatrixView& w);
// q8 / q4 codes as folders before format_version 2 stored them (each block's bytes
// together; q8 rows of cols bytes, q4 rows of nb * 16 with byte i = code i | code 16 + i)
// in today's group layout (tensor.h): [rows, row_bytes].
LineAlignedVector<uint8_t> from_block_layout(DType dtype, const uint8_t* data, int64_t rows,
                                             int64_t cols);
// Plain bf16 copy of any matrix: data [rows, cols].
LineAlignedVector<uint16_t> to_bf16(const MatrixView& w);

// y[m, w.rows] = x[m, w.cols] W^T (+ bias) for I8 / U8 matrices. The activations are
// quantized to int8 per block of 32 and the products summed in int32 per block on
// AVX512-VNNI (dot products for small m, quant_gemm.cc's tiles for larger m); without
// VNNI, larger m takes matmul_quantized_panels.
void matmul_quantized(const float* x, int64_t m, const MatrixView& w, const float* bias, float* y);

// Whether the decode products (m <= 8; q8, q4 and the bf16 mode's bf16 rows) prefetch
// their weights in software (quant.cc, fast.cc).
// Mode -1 (the default) chooses by CPU: off on AMD family 0x19 (Zen 4), where the hardware
// prefetchers alone read faster, on elsewhere; 0 never; 1 always. For benchmarks
// (bench/decode_prefetch_ab) comparing the two in one process: the products' values are
// the same either way.
void set_decode_prefetch(int mode);
bool decode_prefetch();

// The decode products' software prefetch of one weight stream at the line it reads (p):
// the line kDecodeL1Ahead bytes on into L1, and the line kDecodeL2Ahead bytes on into L2,
// one of each per line read. The L2 prefetch came in session 31 on an Intel Emerald Rapids
// (family 6 model 0xcf, 2 threads): passes over decoder layers of the model's shapes plus
// its LM head (> 900 MiB), alternating in one process (a /tmp harness, 8-12 passes each,
// medians), read with an L2 prefetch 4, 6 or 8 KiB on against the L1 prefetch alone:
// PaliGemma's q8 22.3 -> 25.1-26.3 GB/s, q4 22.2 -> 24.0-25.2, bf16 25.7 -> 28.4-29.1;
// PaliGemma 2's q8 25.0 -> 25.3-27.2, q4 23.9 -> 24.3-24.6, bf16 26.3 -> 28.9-29.4
// (L1 prefetch 1 or 1.5 KiB on, or the L2 one alone, were no better). The roofline's
// memory probe reads with it too (roofline.cc). (Addresses are formed as integers: past a
// matrix's last rows they point beyond the buffer, which a prefetch may do but pointer
// arithmetic may not.)
inline constexpr uintptr_t kDecodeL1Ahead = 2048, kDecodeL2Ahead = 6144;
inline void prefetch_decode_stream(const void* p) {
  const auto a = reinterpret_cast<uintptr_t>(p);
  // NOLINTBEGIN(performance-no-int-to-ptr): see above
  __builtin_prefetch(reinterpret_cast<const void*>(a + kDecodeL1Ahead), 0, 3);  // prefetcht0
  __builtin_prefetch(reinterpret_cast<const void*>(a + kDecodeL2Ahead), 0, 2);  // prefetcht1
  // NOLINTEND(performance-no-int-to-ptr)
}

// The same with x rounded to bf16 and weight rows dequantized to bf16 in panels, each
// multiplied by oneDNN's bf16 GEMM straight into its columns of y (or, where oneDNN cannot,
// by the dense float32 product). The larger-m path on CPUs without VNNI; public for tests.
void matmul_quantized_panels(const float* x, int64_t m, const MatrixView& w, const float* bias,
                             float* y);

}  // namespace pg::kernels
