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
  MatrixView view() const { return {dtype, data.data(), rows, cols, scales.data()}; }
};

// q8: per block of 32, scale = max|w| / 127, q = round(w / scale).
QuantizedMatrix quantize_q8(const MatrixView& w);
// q4 (ggml Q4_0 style): per block, the element of largest magnitude m maps to code 0:
// scale = m / -8, code = clamp(round(w / scale) + 8, 0, 15).
QuantizedMatrix quantize_q4(const MatrixView& w);
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

// The same with x rounded to bf16 and weight rows dequantized to bf16 in panels, each
// multiplied by oneDNN's bf16 GEMM straight into its columns of y (or, where oneDNN cannot,
// by the dense float32 product). The larger-m path on CPUs without VNNI; public for tests.
void matmul_quantized_panels(const float* x, int64_t m, const MatrixView& w, const float* bias,
                             float* y);

}  // namespace pg::kernels
