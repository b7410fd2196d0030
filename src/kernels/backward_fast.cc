// The two big products of a Linear layer's backward pass through the fast forward matmul
// (blocked, threaded): transposed copies of the operands turn dx = dy W and
// dw = dy^T x into y = x W^T products. Small products go to the reference loops.
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <memory>
#include <new>
#include <vector>

#include "base/parallel.h"
#include "kernels/backward.h"
#include "tensor/dtype.h"

namespace pg::kernels {
namespace {

// Below this many rows of dy the transposes cost more than they save.
constexpr int64_t kMinRowsForFast = 16;

// dst[c, r] = src[r, c] for elements of `es` bytes. src: [rows, cols] -> dst: [cols, rows].
void transpose_bytes(const void* src, int64_t rows, int64_t cols, size_t es, void* dst) {
  constexpr int64_t kB = 32;
  const auto* s = static_cast<const uint8_t*>(src);
  auto* d = static_cast<uint8_t*>(dst);
  const int64_t col_blocks = (cols + kB - 1) / kB;
  parallel_for(col_blocks, 1, [&](int64_t b0, int64_t b1) {
    for (int64_t cb = b0 * kB; cb < std::min(cols, b1 * kB); cb += kB) {
      for (int64_t rb = 0; rb < rows; rb += kB) {
        for (int64_t c = cb; c < std::min(cols, cb + kB); ++c) {
          for (int64_t r = rb; r < std::min(rows, rb + kB); ++r) {
            std::memcpy(d + (c * rows + r) * es, s + (r * cols + c) * es, es);
          }
        }
      }
    }
  });
}

struct FreeDeleter {
  void operator()(void* p) const { std::free(p); }
};

std::unique_ptr<void, FreeDeleter> alloc(size_t bytes) {
  void* p = std::aligned_alloc(64, (bytes + 63) / 64 * 64);
  if (p == nullptr) throw std::bad_alloc();
  return std::unique_ptr<void, FreeDeleter>(p);
}

}  // namespace

// dy: [m, n], w: [n, k] -> dx: [m, k].
void matmul_backward_input_fast(const float* dy, int64_t m, const MatrixView& w, float* dx,
                                bool accumulate) {
  if (m < kMinRowsForFast || w.quantized()) return matmul_backward_input(dy, m, w, dx, accumulate);
  const int64_t n = w.rows, k = w.cols;
  const size_t es = dtype_size(w.dtype);
  auto wt = alloc(static_cast<size_t>(n * k) * es);  // W^T: [k, n], stored dtype
  transpose_bytes(w.data, n, k, es, wt.get());
  const MatrixView view{w.dtype, wt.get(), k, n};
  if (!accumulate) {
    fast_kernels().matmul(dy, m, view, nullptr, dx);
    return;
  }
  auto tmp = alloc(static_cast<size_t>(m * k) * sizeof(float));
  float* t = static_cast<float*>(tmp.get());
  fast_kernels().matmul(dy, m, view, nullptr, t);
  fast_kernels().add(dx, t, m * k);
}

// dy: [m, n], x: [m, k] -> dw: [n, k] +=, db: [n] +=.
void matmul_backward_weight_fast(const float* dy, const float* x, int64_t m, int64_t n, int64_t k,
                                 float* dw, float* db) {
  if (m < kMinRowsForFast) return matmul_backward_weight(dy, x, m, n, k, dw, db);
  auto dyt = alloc(static_cast<size_t>(n * m) * sizeof(float));  // dy^T: [n, m]
  auto xt = alloc(static_cast<size_t>(k * m) * sizeof(float));   // x^T: [k, m]
  transpose_bytes(dy, m, n, sizeof(float), dyt.get());
  transpose_bytes(x, m, k, sizeof(float), xt.get());
  auto tmp = alloc(static_cast<size_t>(n * k) * sizeof(float));
  float* t = static_cast<float*>(tmp.get());
  const MatrixView view{DType::kF32, xt.get(), k, m};
  fast_kernels().matmul(static_cast<const float*>(dyt.get()), n, view, nullptr, t);
  fast_kernels().add(dw, t, n * k);
  if (db != nullptr) {
    const float* d = static_cast<const float*>(dyt.get());
    for (int64_t j = 0; j < n; ++j) {
      float s = 0.0f;
      for (int64_t i = 0; i < m; ++i) s += d[j * m + i];
      db[j] += s;
    }
  }
}

}  // namespace pg::kernels
