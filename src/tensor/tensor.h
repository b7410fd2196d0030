// Tensors: an owning float32 activation buffer, and non-owning views of stored
// (possibly memory-mapped) weights in their stored dtype.
#pragma once

#include <cassert>
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "tensor/dtype.h"

namespace pg {

using Shape = std::vector<int64_t>;

int64_t shape_numel(const Shape& shape);
std::string shape_to_string(const Shape& shape);  // "[2, 3]"

// A read-only view of stored tensor data (weights), in its stored dtype.
struct TensorView {
  DType dtype = DType::kF32;
  Shape shape;
  const void* data = nullptr;

  int64_t numel() const { return shape_numel(shape); }
  int64_t dim(int i) const {
    return shape[static_cast<size_t>(i < 0 ? i + static_cast<int>(shape.size()) : i)];
  }
  size_t nbytes() const { return static_cast<size_t>(numel()) * dtype_size(dtype); }
};

// Quantized weights come in blocks of this many consecutive elements of a row, each
// block with one float32 scale.
constexpr int64_t kQuantBlock = 32;
inline int64_t quant_blocks(int64_t cols) { return (cols + kQuantBlock - 1) / kQuantBlock; }
// Blocks interleaved together in a quantized row (MatrixView below).
constexpr int64_t kQuantGroup = 16;

// A row-major matrix of weights [rows, cols]. Matrix products read it as W in
// y = x W^T, PyTorch's Linear layout. Formats, by dtype:
//   F32, BF16, F16: plain elements, data [rows, cols].
//   I8 ("q8"): data int8 [rows, nb * 32], 32 codes per block, w = q * scales[r * nb + b];
//              a short last block is padded with 0.
//   U8 ("q4"): data uint8 [rows, nb * 16], 32 4-bit codes per block, w = (code - 8) *
//              scales[r * nb + b]; a short last block is padded with code 8. Byte i of a
//              block's 16 holds code i (low nibble) and code 16 + i (high nibble).
// nb = quant_blocks(cols). In both, a row's blocks go in groups of 16 (the last group may
// hold fewer, n), and a group's bytes in runs of 4 n: bytes 4j..4j+3 of run t are bytes
// 4t..4t+3 of the group's block j. So one 64-byte vector holds 4 bytes of each of 16
// blocks, lane j for block j, and a product sums whole blocks lane by lane (group_byte
// below). Quantized folders before format_version 2 stored each block's bytes together
// (and q8 rows unpadded, cols bytes); they are repacked at load.
struct MatrixView {
  DType dtype = DType::kF32;
  const void* data = nullptr;
  int64_t rows = 0;
  int64_t cols = 0;
  const float* scales = nullptr;  // I8 and U8 only: [rows, nb]
  // Products may round the activations to bf16 (set for --dtype bf16, int8, q4; never
  // for weights merely stored in bf16, which stay exact against the float32 reference).
  bool low_precision = false;
  // I8 only: every block of a row has the same scale (per-output-channel int8, the w8a8
  // mode), so that a product may sum a row's codes in int32 across blocks and scale once.
  bool row_scales = false;

  bool quantized() const { return dtype == DType::kI8 || dtype == DType::kU8; }
  // Bytes of one stored row (without scales).
  int64_t row_bytes() const {
    if (dtype == DType::kU8) return quant_blocks(cols) * kQuantBlock / 2;
    if (dtype == DType::kI8) return quant_blocks(cols) * kQuantBlock;
    return cols * static_cast<int64_t>(dtype_size(dtype));
  }
  // Bytes held: the codes and every block's scale.
  int64_t total_bytes() const {
    return rows * row_bytes() + (quantized() ? rows * quant_blocks(cols) * 4 : 0);
  }
  // Bytes read by one pass of the decode products over the matrix: with row_scales, one
  // scale per row (its first block's) rather than every block's.
  int64_t stream_bytes() const {
    return row_scales ? rows * row_bytes() + rows * 4 : total_bytes();
  }
};

// The offset in a row of nb blocks of byte i of block b, blocks of `block_bytes` bytes
// (32 for q8, 16 for q4) interleaved in groups of 16 as above.
inline int64_t group_byte(int64_t nb, int64_t block_bytes, int64_t b, int64_t i) {
  const int64_t g0 = b / kQuantGroup * kQuantGroup;
  const int64_t n = nb - g0 < kQuantGroup ? nb - g0 : kQuantGroup;
  return g0 * block_bytes + (i / 4) * 4 * n + (b - g0) * 4 + i % 4;
}
// Block b's block_bytes bytes, gathered from a row of nb blocks into out.
inline void gather_block(const uint8_t* row, int64_t nb, int64_t block_bytes, int64_t b,
                         uint8_t* out) {
  for (int64_t t = 0; t < block_bytes; t += 4) {
    const uint8_t* src = row + group_byte(nb, block_bytes, b, t);
    for (int64_t i = 0; i < 4; ++i) out[t + i] = src[i];
  }
}

// Row r of w as float32: out[cols]. Works for every format (the reference decoding).
void dequantize_row(const MatrixView& w, int64_t r, float* out);

// An owning, 64-byte aligned float32 tensor for activations.
class Tensor {
 public:
  Tensor() = default;
  explicit Tensor(Shape shape);                     // zero-filled
  static Tensor from_view(const TensorView& view);  // converts to float32

  const Shape& shape() const { return shape_; }
  int64_t dim(int i) const {
    return shape_[static_cast<size_t>(i < 0 ? i + static_cast<int>(shape_.size()) : i)];
  }
  int rank() const { return static_cast<int>(shape_.size()); }
  int64_t numel() const { return numel_; }
  float* data() { return data_.get(); }
  const float* data() const { return data_.get(); }
  float* row(int64_t r) { return data_.get() + r * shape_.back(); }
  const float* row(int64_t r) const { return data_.get() + r * shape_.back(); }
  // Same data, new shape of the same element count.
  void reshape(Shape shape);

 private:
  struct Free {
    void operator()(float* p) const;
  };
  Shape shape_;
  int64_t numel_ = 0;
  std::unique_ptr<float[], Free> data_;
};

}  // namespace pg
