// Reference kernels: plain scalar loops that define each op. No threading, no blocking,
// no reordering of sums: every accumulation runs in float32 in index order. The fast
// table is tested against these.
#include <cmath>
#include <cstdint>
#include <limits>
#include <vector>

#include "kernels/kernels.h"
#include "tensor/dtype.h"
#include "tensor/tensor.h"

namespace pg::kernels {
namespace {

// Row r of a weight matrix converted to float: out[w.cols]. Quantized formats (I8, U8)
// decode with dequantize_row, the tensor layer's reference decoding.
void weight_row(const MatrixView& w, int64_t r, float* out) {
  const int64_t base = r * w.cols;
  const auto* f32 = static_cast<const float*>(w.data);
  const auto* u16 = static_cast<const uint16_t*>(w.data);
  switch (w.dtype) {
    case DType::kF32:
      for (int64_t c = 0; c < w.cols; ++c) out[c] = f32[base + c];
      return;
    case DType::kBF16:
      for (int64_t c = 0; c < w.cols; ++c) out[c] = bf16_to_f32(u16[base + c]);
      return;
    case DType::kF16:
      for (int64_t c = 0; c < w.cols; ++c) out[c] = f16_to_f32(u16[base + c]);
      return;
    default: dequantize_row(w, r, out);
  }
}

// x: [m, k], w: [n, k], bias: [n] or null, y: [m, n]; k = w.cols, n = w.rows.
void matmul(const float* x, int64_t m, const MatrixView& w, const float* bias, float* y) {
  const int64_t n = w.rows, k = w.cols;
  std::vector<float> row(static_cast<size_t>(k));
  for (int64_t i = 0; i < m; ++i) {
    for (int64_t j = 0; j < n; ++j) {
      weight_row(w, j, row.data());
      float acc = 0.0f;
      for (int64_t p = 0; p < k; ++p) acc += x[i * k + p] * row[p];
      if (bias != nullptr) acc += bias[j];
      y[i * n + j] = acc;
    }
  }
}

// The products one after the other.
void matmul_many(const float* x, int64_t m, const MatmulOutput* out, int count) {
  for (int i = 0; i < count; ++i) matmul(x, m, out[i].w, out[i].bias, out[i].y);
}

// x, y: [rows, dim]; gamma, beta: [dim]. Two-pass mean and biased variance.
void layer_norm(const float* x, int64_t rows, int64_t dim, const float* gamma, const float* beta,
                float eps, float* y) {
  for (int64_t r = 0; r < rows; ++r) {
    const float* xr = x + r * dim;
    float* yr = y + r * dim;
    float sum = 0.0f;
    for (int64_t i = 0; i < dim; ++i) sum += xr[i];
    const float mean = sum / static_cast<float>(dim);
    float sq = 0.0f;
    for (int64_t i = 0; i < dim; ++i) sq += (xr[i] - mean) * (xr[i] - mean);
    const float inv = 1.0f / std::sqrt(sq / static_cast<float>(dim) + eps);
    for (int64_t i = 0; i < dim; ++i) yr[i] = (xr[i] - mean) * inv * gamma[i] + beta[i];
  }
}

// x, y: [rows, dim] (may alias); weight: [dim].
void rms_norm(const float* x, int64_t rows, int64_t dim, const float* weight, float eps, float* y) {
  for (int64_t r = 0; r < rows; ++r) {
    const float* xr = x + r * dim;
    float* yr = y + r * dim;
    float sq = 0.0f;
    for (int64_t i = 0; i < dim; ++i) sq += xr[i] * xr[i];
    const float inv = 1.0f / std::sqrt(sq / static_cast<float>(dim) + eps);
    for (int64_t i = 0; i < dim; ++i) yr[i] = xr[i] * inv * (1.0f + weight[i]);
  }
}

float gelu_tanh_scalar(float x) {
  const float kAlpha = 0.7978845608028654f;  // sqrt(2 / pi)
  return 0.5f * x * (1.0f + std::tanh(kAlpha * (x + 0.044715f * x * x * x)));
}

// x, y: [n] (may alias).
void gelu_tanh(const float* x, float* y, int64_t n) {
  for (int64_t i = 0; i < n; ++i) y[i] = gelu_tanh_scalar(x[i]);
}

// gate, up, y: [n]; y may alias either input.
void gelu_tanh_mul(const float* gate, const float* up, float* y, int64_t n) {
  for (int64_t i = 0; i < n; ++i) y[i] = gelu_tanh_scalar(gate[i]) * up[i];
}

// x: [m, k]; gate, up: [n, k]; y: [m, n].
void matmul_gelu_mul(const float* x, int64_t m, const MatrixView& gate, const MatrixView& up,
                     float* y) {
  std::vector<float> up_y(static_cast<size_t>(m * up.rows));
  matmul(x, m, gate, nullptr, y);
  matmul(x, m, up, nullptr, up_y.data());
  gelu_tanh_mul(y, up_y.data(), y, m * gate.rows);
}

// x: [m, k]; gate, up: [n, k]; down: [h, n]; hidden: [m, n]; y: [m, h].
void mlp(const float* x, int64_t m, const MatrixView& gate, const MatrixView& up,
         const MatrixView& down, float* hidden, float* y) {
  matmul_gelu_mul(x, m, gate, up, hidden);
  matmul(hidden, m, down, nullptr, y);
}

// x: rows of `stride` floats, each holding num_heads heads of head_dim; positions: [rows].
void rope(float* x, int64_t rows, int64_t stride, int64_t num_heads, int64_t head_dim,
          const int64_t* positions, float theta) {
  const int64_t half = head_dim / 2;
  for (int64_t r = 0; r < rows; ++r) {
    for (int64_t h = 0; h < num_heads; ++h) {
      float* v = x + r * stride + h * head_dim;
      for (int64_t i = 0; i < half; ++i) {
        const float exponent = static_cast<float>(2 * i) / static_cast<float>(head_dim);
        const float inv_freq = 1.0f / std::pow(theta, exponent);
        const float angle = static_cast<float>(positions[r]) * inv_freq;
        const float c = std::cos(angle), s = std::sin(angle);
        const float a = v[i], b = v[i + half];
        v[i] = a * c - b * s;
        v[i + half] = b * c + a * s;
      }
    }
  }
}

// x: [n], in place.
void softcap(float* x, int64_t n, float cap) {
  for (int64_t i = 0; i < n; ++i) x[i] = cap * std::tanh(x[i] / cap);
}

// y, x: [n].
void add(float* y, const float* x, int64_t n) {
  for (int64_t i = 0; i < n; ++i) y[i] += x[i];
}

// x: [n].
void scale(float* x, int64_t n, float s) {
  for (int64_t i = 0; i < n; ++i) x[i] *= s;
}

int64_t argmax(const float* x, int64_t n) {
  int64_t best = 0;
  for (int64_t i = 1; i < n; ++i) {
    if (x[i] > x[best]) best = i;
  }
  return best;
}

// Whether query index i may see key j (the rules in AttentionParams).
bool visible(const AttentionParams& p, int64_t i, int64_t j) {
  if (p.causal && !(j < p.prefix_len || j <= i)) return false;
  if (p.sliding_window > 0 && !(i - j < p.sliding_window)) return false;
  return true;
}

// q: [T, q_stride], k, v: [S, kv_stride], out: [T, out_stride]. A query that sees no key
// gets zeros.
void attention(const AttentionParams& p, const float* q, const void* k_any, const void* v_any,
               float* out) {
  if (p.kv_bf16) {  // bf16 keys and values: the float32 they represent (exact), then as below
    const auto n = static_cast<size_t>(p.num_keys * p.kv_stride);
    std::vector<float> kf(n), vf(n);
    convert_to_f32(DType::kBF16, k_any, kf.data(), static_cast<int64_t>(n));
    convert_to_f32(DType::kBF16, v_any, vf.data(), static_cast<int64_t>(n));
    AttentionParams f = p;
    f.kv_bf16 = false;
    return attention(f, q, kf.data(), vf.data(), out);
  }
  const auto* k = static_cast<const float*>(k_any);
  const auto* v = static_cast<const float*>(v_any);
  const int64_t group = p.num_heads / p.num_kv_heads;
  const int64_t d_dim = p.head_dim;
  std::vector<float> scores(static_cast<size_t>(p.num_keys));
  std::vector<bool> seen(static_cast<size_t>(p.num_keys));
  for (int64_t t = 0; t < p.num_queries; ++t) {
    const int64_t i = p.query_offset + t;
    for (int64_t h = 0; h < p.num_heads; ++h) {
      const float* qh = q + t * p.q_stride + h * d_dim;
      const int64_t kvh = h / group;
      float max_score = -std::numeric_limits<float>::infinity();
      bool any = false;
      for (int64_t j = 0; j < p.num_keys; ++j) {
        const float* kj = k + j * p.kv_stride + kvh * d_dim;
        float dot = 0.0f;
        for (int64_t d = 0; d < d_dim; ++d) dot += qh[d] * kj[d];
        float s = dot * p.scale;
        if (p.softcap > 0.0f) s = p.softcap * std::tanh(s / p.softcap);
        scores[j] = s;
        seen[j] = visible(p, i, j);
        if (seen[j]) {
          any = true;
          if (s > max_score) max_score = s;
        }
      }
      float sum = 0.0f;
      for (int64_t j = 0; j < p.num_keys; ++j) {
        scores[j] = seen[j] ? std::exp(scores[j] - max_score) : 0.0f;
        sum += scores[j];
      }
      float* o = out + t * p.out_stride + h * d_dim;
      for (int64_t d = 0; d < d_dim; ++d) {
        float acc = 0.0f;
        for (int64_t j = 0; j < p.num_keys; ++j) {
          if (seen[j]) acc += scores[j] * v[j * p.kv_stride + kvh * d_dim + d];
        }
        o[d] = any ? acc / sum : 0.0f;
      }
    }
  }
}

}  // namespace

const KernelTable& reference_kernels() {
  static const KernelTable table = {
      "reference", matmul,   matmul_many, matmul_gelu_mul, mlp,
      layer_norm,  rms_norm, gelu_tanh,   gelu_tanh_mul,   rope,
      softcap,     add,      scale,       argmax,          attention,
  };
  return table;
}

}  // namespace pg::kernels
