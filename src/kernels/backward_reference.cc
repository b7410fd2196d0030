// Backward kernels as plain loops: the definitions the tests check against finite
// differences. Loops are split over output rows (or columns) with parallel_for; every
// output element is summed by one thread in index order, so the results do not depend
// on the thread count.
#include <cmath>
#include <cstdint>
#include <cstring>
#include <limits>
#include <vector>

#include "base/parallel.h"
#include "kernels/backward.h"
#include "tensor/dtype.h"

namespace pg::kernels {
namespace {

// Columns [c0, c1) of row r of w, converted to float. w: [rows, cols].
void weight_row(const MatrixView& w, int64_t r, int64_t c0, int64_t c1, float* out) {
  if (w.quantized()) {  // whole row through the reference decoding, then the slice
    std::vector<float> row(static_cast<size_t>(w.cols));
    dequantize_row(w, r, row.data());
    std::memcpy(out, row.data() + c0, sizeof(float) * static_cast<size_t>(c1 - c0));
    return;
  }
  const size_t es = dtype_size(w.dtype);
  const auto* src =
      static_cast<const uint8_t*>(w.data) + (static_cast<size_t>(r * w.cols + c0)) * es;
  convert_to_f32(w.dtype, src, out, c1 - c0);
}

constexpr float kGeluAlpha = 0.7978845608028654f;  // sqrt(2 / pi)
constexpr float kGeluBeta = 0.044715f;

float gelu_scalar(float x) {
  return 0.5f * x * (1.0f + std::tanh(kGeluAlpha * (x + kGeluBeta * x * x * x)));
}

float gelu_grad(float x) {
  const float t = std::tanh(kGeluAlpha * (x + kGeluBeta * x * x * x));
  return 0.5f * (1.0f + t) +
         0.5f * x * (1.0f - t * t) * kGeluAlpha * (1.0f + 3.0f * kGeluBeta * x * x);
}

// Whether query index i may see key j (kernels.h's AttentionParams rules).
bool visible(const AttentionParams& p, int64_t i, int64_t j) {
  if (p.causal && !(j < p.prefix_len || j <= i)) return false;
  if (p.sliding_window > 0 && !(i - j < p.sliding_window)) return false;
  return true;
}

float dot(const float* a, const float* b, int64_t n) {
  float acc = 0.0f;
  for (int64_t i = 0; i < n; ++i) acc += a[i] * b[i];
  return acc;
}

}  // namespace

// dy: [m, n], w: [n, k] -> dx: [m, k]. Split over column blocks of dx; each weight row
// block is converted once and applied to every row of dy.
void matmul_backward_input(const float* dy, int64_t m, const MatrixView& w, float* dx,
                           bool accumulate) {
  const int64_t n = w.rows, k = w.cols;
  constexpr int64_t kBlock = 64;
  const int64_t blocks = (k + kBlock - 1) / kBlock;
  parallel_for(blocks, 1, [&](int64_t b0, int64_t b1) {
    std::vector<float> wrow(kBlock);
    for (int64_t b = b0; b < b1; ++b) {
      const int64_t c0 = b * kBlock, c1 = std::min(k, c0 + kBlock), cw = c1 - c0;
      if (!accumulate) {
        for (int64_t i = 0; i < m; ++i) std::memset(dx + i * k + c0, 0, sizeof(float) * cw);
      }
      for (int64_t j = 0; j < n; ++j) {
        weight_row(w, j, c0, c1, wrow.data());
        for (int64_t i = 0; i < m; ++i) {
          const float a = dy[i * n + j];
          float* out = dx + i * k + c0;
          for (int64_t c = 0; c < cw; ++c) out[c] += a * wrow[c];
        }
      }
    }
  });
}

// dy: [m, n], x: [m, k] -> dw: [n, k] +=, db: [n] +=. Split over rows of dw.
void matmul_backward_weight(const float* dy, const float* x, int64_t m, int64_t n, int64_t k,
                            float* dw, float* db) {
  parallel_for(n, 4, [&](int64_t j0, int64_t j1) {
    for (int64_t j = j0; j < j1; ++j) {
      float* out = dw + j * k;
      for (int64_t i = 0; i < m; ++i) {
        const float a = dy[i * n + j];
        const float* xi = x + i * k;
        for (int64_t c = 0; c < k; ++c) out[c] += a * xi[c];
      }
      if (db != nullptr) {
        float s = 0.0f;
        for (int64_t i = 0; i < m; ++i) s += dy[i * n + j];
        db[j] += s;
      }
    }
  });
}

// x, dy, dx: [rows, dim]; gamma, dgamma, dbeta: [dim].
void layer_norm_backward(const float* x, const float* dy, int64_t rows, int64_t dim,
                         const float* gamma, float eps, float* dx, float* dgamma, float* dbeta,
                         bool accumulate) {
  std::vector<float> xhat(static_cast<size_t>(dim));
  const float fdim = static_cast<float>(dim);
  for (int64_t r = 0; r < rows; ++r) {
    const float* xr = x + r * dim;
    const float* g = dy + r * dim;
    float sum = 0.0f;
    for (int64_t i = 0; i < dim; ++i) sum += xr[i];
    const float mean = sum / fdim;
    float sq = 0.0f;
    for (int64_t i = 0; i < dim; ++i) sq += (xr[i] - mean) * (xr[i] - mean);
    const float inv = 1.0f / std::sqrt(sq / fdim + eps);
    float mean_g = 0.0f, mean_gx = 0.0f;
    for (int64_t i = 0; i < dim; ++i) {
      xhat[i] = (xr[i] - mean) * inv;
      const float gi = g[i] * gamma[i];
      mean_g += gi;
      mean_gx += gi * xhat[i];
    }
    mean_g /= fdim;
    mean_gx /= fdim;
    float* out = dx + r * dim;
    for (int64_t i = 0; i < dim; ++i) {
      const float v = inv * (g[i] * gamma[i] - mean_g - xhat[i] * mean_gx);
      out[i] = accumulate ? out[i] + v : v;
    }
    if (dgamma != nullptr) {
      for (int64_t i = 0; i < dim; ++i) dgamma[i] += g[i] * xhat[i];
    }
    if (dbeta != nullptr) {
      for (int64_t i = 0; i < dim; ++i) dbeta[i] += g[i];
    }
  }
}

// x, dy, dx: [rows, dim]; weight, dweight: [dim].
void rms_norm_backward(const float* x, const float* dy, int64_t rows, int64_t dim,
                       const float* weight, float eps, float* dx, float* dweight, bool accumulate) {
  const float fdim = static_cast<float>(dim);
  for (int64_t r = 0; r < rows; ++r) {
    const float* xr = x + r * dim;
    const float* g = dy + r * dim;
    float sq = 0.0f;
    for (int64_t i = 0; i < dim; ++i) sq += xr[i] * xr[i];
    const float inv = 1.0f / std::sqrt(sq / fdim + eps);
    float s = 0.0f;  // sum(dy (1 + w) x)
    for (int64_t i = 0; i < dim; ++i) s += g[i] * (1.0f + weight[i]) * xr[i];
    const float c = s * inv * inv * inv / fdim;
    float* out = dx + r * dim;
    for (int64_t i = 0; i < dim; ++i) {
      const float v = inv * (1.0f + weight[i]) * g[i] - xr[i] * c;
      out[i] = accumulate ? out[i] + v : v;
    }
    if (dweight != nullptr) {
      for (int64_t i = 0; i < dim; ++i) dweight[i] += g[i] * xr[i] * inv;
    }
  }
}

// x, dy, dx: [n].
void gelu_tanh_backward(const float* x, const float* dy, float* dx, int64_t n) {
  for (int64_t i = 0; i < n; ++i) dx[i] = dy[i] * gelu_grad(x[i]);
}

// gate, up, dy, dgate, dup: [n].
void gelu_tanh_mul_backward(const float* gate, const float* up, const float* dy, float* dgate,
                            float* dup, int64_t n) {
  for (int64_t i = 0; i < n; ++i) {
    const float g = gate[i], d = dy[i];
    dup[i] = d * gelu_scalar(g);
    dgate[i] = d * up[i] * gelu_grad(g);
  }
}

// y, dy, dx: [n].
void softcap_backward(const float* y, const float* dy, float* dx, int64_t n, float cap) {
  for (int64_t i = 0; i < n; ++i) {
    const float t = y[i] / cap;
    dx[i] = dy[i] * (1.0f - t * t);
  }
}

// dx: rows of `stride` floats; positions: [rows]. The angles as kernels.h's rope.
void rope_backward(float* dx, int64_t rows, int64_t stride, int64_t num_heads, int64_t head_dim,
                   const int64_t* positions, float theta) {
  const int64_t half = head_dim / 2;
  for (int64_t r = 0; r < rows; ++r) {
    for (int64_t h = 0; h < num_heads; ++h) {
      float* v = dx + r * stride + h * head_dim;
      for (int64_t i = 0; i < half; ++i) {
        const float exponent = static_cast<float>(2 * i) / static_cast<float>(head_dim);
        const float inv_freq = 1.0f / std::pow(theta, exponent);
        const float angle = static_cast<float>(positions[r]) * inv_freq;
        const float c = std::cos(angle), s = std::sin(angle);
        const float a = v[i], b = v[i + half];
        v[i] = a * c + b * s;
        v[i + half] = b * c - a * s;
      }
    }
  }
}

// q: [T, q_stride], k, v: [S, kv_stride] -> out: [T, out_stride], probs: [Hq, T, S].
void attention_forward(const AttentionParams& p, const float* q, const float* k, const float* v,
                       float* out, float* probs) {
  const int64_t T = p.num_queries, S = p.num_keys, D = p.head_dim;
  const int64_t group = p.num_heads / p.num_kv_heads;
  parallel_for(p.num_heads * T, 8, [&](int64_t a0, int64_t a1) {
    for (int64_t a = a0; a < a1; ++a) {
      const int64_t h = a / T, t = a % T, kvh = h / group, i = p.query_offset + t;
      const float* qh = q + t * p.q_stride + h * D;
      float* pr = probs + (h * T + t) * S;
      float max_score = -std::numeric_limits<float>::infinity();
      bool any = false;
      for (int64_t j = 0; j < S; ++j) {
        float s = dot(qh, k + j * p.kv_stride + kvh * D, D) * p.scale;
        if (p.softcap > 0.0f) s = p.softcap * std::tanh(s / p.softcap);
        pr[j] = s;
        if (visible(p, i, j)) {
          any = true;
          if (s > max_score) max_score = s;
        }
      }
      float sum = 0.0f;
      for (int64_t j = 0; j < S; ++j) {
        pr[j] = visible(p, i, j) ? std::exp(pr[j] - max_score) : 0.0f;
        sum += pr[j];
      }
      for (int64_t j = 0; j < S; ++j) pr[j] = any ? pr[j] / sum : 0.0f;
      float* o = out + t * p.out_stride + h * D;
      for (int64_t d = 0; d < D; ++d) o[d] = 0.0f;
      for (int64_t j = 0; j < S; ++j) {
        if (pr[j] == 0.0f) continue;
        const float* vj = v + j * p.kv_stride + kvh * D;
        for (int64_t d = 0; d < D; ++d) o[d] += pr[j] * vj[d];
      }
    }
  });
}

// See backward.h. Two passes: dscores [Hq, T, S] by (head, query) rows, then dq by query
// rows and dk, dv by key rows.
void attention_backward(const AttentionParams& p, const float* q, const float* k, const float* v,
                        const float* probs, const float* dout, float* dq, float* dk, float* dv) {
  const int64_t T = p.num_queries, S = p.num_keys, D = p.head_dim;
  const int64_t Hq = p.num_heads, Hkv = p.num_kv_heads, group = Hq / Hkv;
  // ds = d(score before scaling) = dsoftmax * dsoftcap * scale.
  std::vector<float> ds(static_cast<size_t>(Hq * T * S));
  parallel_for(Hq * T, 8, [&](int64_t a0, int64_t a1) {
    for (int64_t a = a0; a < a1; ++a) {
      const int64_t h = a / T, t = a % T, kvh = h / group;
      const float* pr = probs + (h * T + t) * S;
      const float* go = dout + t * p.out_stride + h * D;
      float* d = ds.data() + (h * T + t) * S;
      float sum = 0.0f;
      for (int64_t j = 0; j < S; ++j) {
        d[j] = pr[j] != 0.0f ? dot(go, v + j * p.kv_stride + kvh * D, D) : 0.0f;
        sum += pr[j] * d[j];
      }
      const float* qh = q + t * p.q_stride + h * D;
      for (int64_t j = 0; j < S; ++j) {
        if (pr[j] == 0.0f) {
          d[j] = 0.0f;
          continue;
        }
        float g = pr[j] * (d[j] - sum);
        if (p.softcap > 0.0f) {
          const float th =
              std::tanh(dot(qh, k + j * p.kv_stride + kvh * D, D) * p.scale / p.softcap);
          g *= 1.0f - th * th;
        }
        d[j] = g * p.scale;
      }
    }
  });
  // dq[t, h] = sum_j ds[h, t, j] k[j, kvh].
  parallel_for(T, 1, [&](int64_t t0, int64_t t1) {
    for (int64_t t = t0; t < t1; ++t) {
      for (int64_t h = 0; h < Hq; ++h) {
        float* o = dq + t * p.q_stride + h * D;
        for (int64_t d = 0; d < D; ++d) o[d] = 0.0f;
        const float* d = ds.data() + (h * T + t) * S;
        const int64_t kvh = h / group;
        for (int64_t j = 0; j < S; ++j) {
          if (d[j] == 0.0f) continue;
          const float* kj = k + j * p.kv_stride + kvh * D;
          for (int64_t e = 0; e < D; ++e) o[e] += d[j] * kj[e];
        }
      }
    }
  });
  // dk[j, kvh] = sum_{h in group, t} ds[h, t, j] q[t, h]; dv[j, kvh] = sum p[h, t, j] dout[t, h].
  parallel_for(S, 1, [&](int64_t j0, int64_t j1) {
    for (int64_t j = j0; j < j1; ++j) {
      for (int64_t kvh = 0; kvh < Hkv; ++kvh) {
        float* gk = dk + j * p.kv_stride + kvh * D;
        float* gv = dv + j * p.kv_stride + kvh * D;
        for (int64_t e = 0; e < D; ++e) gk[e] = gv[e] = 0.0f;
        for (int64_t h = kvh * group; h < (kvh + 1) * group; ++h) {
          for (int64_t t = 0; t < T; ++t) {
            const float d = ds[(h * T + t) * S + j];
            const float pr = probs[(h * T + t) * S + j];
            if (pr == 0.0f) continue;
            const float* qh = q + t * p.q_stride + h * D;
            const float* go = dout + t * p.out_stride + h * D;
            for (int64_t e = 0; e < D; ++e) {
              gk[e] += d * qh[e];
              gv[e] += pr * go[e];
            }
          }
        }
      }
    }
  });
}

}  // namespace pg::kernels
