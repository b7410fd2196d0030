// Backward kernels (src/kernels/backward.h) against central finite differences of the
// forward kernels, and the fast matmul backward against the reference loops.
//
// Each check takes a scalar L = sum_i r_i y_i (r random, accumulated in double) of a
// forward op y, perturbs one input element by +-h, and compares (L+ - L-) / 2h with the
// analytic gradient. Tolerance: float32 rounding of L amplified by 1/h, plus the O(h^2)
// truncation term, both derived from the sizes involved.
#include "kernels/backward.h"

#include <gtest/gtest.h>

#include <cfloat>
#include <cmath>
#include <functional>
#include <random>
#include <vector>

#include "kernels/kernels.h"
#include "tensor/dtype.h"
#include "test_util.h"

namespace pg::kernels {
namespace {

std::vector<float> random_vec(int64_t n, uint32_t seed, float scale = 1.0f) {
  std::mt19937 rng(seed);
  std::uniform_real_distribution<float> d(-scale, scale);
  std::vector<float> v(static_cast<size_t>(n));
  for (float& x : v) x = d(rng);
  return v;
}

// sum_i r_i y_i in double, and ||r y||_2 (its rounding scale).
double dot_loss(const std::vector<float>& r, const std::vector<float>& y, double* l2 = nullptr) {
  double s = 0, a = 0;
  for (size_t i = 0; i < y.size(); ++i) {
    const double t = static_cast<double>(r[i]) * y[i];
    s += t;
    a += t * t;
  }
  if (l2 != nullptr) *l2 = std::sqrt(a);
  return s;
}

// Compares grad (analytic dL/dx) with central differences of loss() over every element of x.
void check_gradient(const char* what, const std::function<double(double*)>& loss,
                    std::vector<float>& x, const std::vector<float>& grad, double h = 1e-2) {
  ASSERT_EQ(x.size(), grad.size()) << what;
  double l2 = 0;
  loss(&l2);
  double max_g = 0;
  for (float g : grad) max_g = std::max(max_g, std::fabs(static_cast<double>(g)));
  // Rounding: each term r_i y_i of L is off by a few eps relative, independently, so L by
  // ~eps * ||r y||_2; two evaluations over 2h. Truncation: h^2/6 f''' with f''' bounded by
  // the gradient scale (the ops here are smooth at unit scale).
  const double tol = 8.0 * FLT_EPSILON * std::max(l2, 1.0) / h + h * h * (1.0 + max_g);
  int64_t worst = -1;
  double worst_err = 0, worst_fd = 0;
  for (size_t i = 0; i < x.size(); ++i) {
    const float x0 = x[i];
    x[i] = x0 + static_cast<float>(h);
    const float xp = x[i];
    const double lp = loss(nullptr);
    x[i] = x0 - static_cast<float>(h);
    const float xm = x[i];
    const double lm = loss(nullptr);
    x[i] = x0;
    const double fd = (lp - lm) / (static_cast<double>(xp) - xm);
    const double err = std::fabs(fd - grad[i]);
    if (err > worst_err) {
      worst_err = err;
      worst = static_cast<int64_t>(i);
      worst_fd = fd;
    }
  }
  EXPECT_LE(worst_err, tol) << what << ": worst index " << worst << " (finite difference "
                            << worst_fd << ", analytic " << grad[static_cast<size_t>(worst)] << ")";
  std::printf("[backward] %-28s max |fd - grad| = %.3g (tolerance %.3g)\n", what, worst_err, tol);
}

MatrixView f32_view(const std::vector<float>& w, int64_t rows, int64_t cols) {
  return MatrixView{DType::kF32, w.data(), rows, cols};
}

TEST(BackwardTest, MatmulInputWeightBias) {
  const int64_t m = 5, n = 7, k = 9;
  auto x = random_vec(m * k, 1), w = random_vec(n * k, 2), b = random_vec(n, 3),
       r = random_vec(m * n, 4);
  auto forward = [&](double* l2) {
    std::vector<float> y(static_cast<size_t>(m * n));
    reference_kernels().matmul(x.data(), m, f32_view(w, n, k), b.data(), y.data());
    return dot_loss(r, y, l2);
  };
  std::vector<float> dx(static_cast<size_t>(m * k)), dw(static_cast<size_t>(n * k), 0.0f),
      db(static_cast<size_t>(n), 0.0f);
  matmul_backward_input(r.data(), m, f32_view(w, n, k), dx.data(), false);
  matmul_backward_weight(r.data(), x.data(), m, n, k, dw.data(), db.data());
  check_gradient("matmul dx", forward, x, dx);
  check_gradient("matmul dw", forward, w, dw);
  check_gradient("matmul db", forward, b, db);

  // Accumulation adds onto what is there.
  std::vector<float> acc(dx.size(), 1.0f);
  matmul_backward_input(r.data(), m, f32_view(w, n, k), acc.data(), true);
  // (the sum starts from 1 instead of 0: rounding of n + 1 terms)
  for (size_t i = 0; i < acc.size(); ++i)
    EXPECT_NEAR(acc[i], dx[i] + 1.0f, 4.0 * FLT_EPSILON * (n + 1)) << i;
}

TEST(BackwardTest, MatmulInputBf16Weights) {
  const int64_t m = 4, n = 6, k = 10;
  auto x = random_vec(m * k, 5), wf = random_vec(n * k, 6), r = random_vec(m * n, 7);
  std::vector<uint16_t> w(wf.size());
  for (size_t i = 0; i < w.size(); ++i) w[i] = f32_to_bf16(wf[i]);
  const MatrixView view{DType::kBF16, w.data(), n, k};
  auto forward = [&](double* l2) {
    std::vector<float> y(static_cast<size_t>(m * n));
    reference_kernels().matmul(x.data(), m, view, nullptr, y.data());
    return dot_loss(r, y, l2);
  };
  std::vector<float> dx(static_cast<size_t>(m * k));
  matmul_backward_input(r.data(), m, view, dx.data(), false);
  check_gradient("matmul dx (bf16 W)", forward, x, dx);
}

// The fast path (transposes + the fast forward matmul) against the reference loops.
TEST(BackwardTest, FastMatmulBackwardMatchesReference) {
  for (DType dt : {DType::kF32, DType::kBF16}) {
    const int64_t m = 37, n = 33, k = 70;
    auto dy = random_vec(m * n, 8), x = random_vec(m * k, 9), wf = random_vec(n * k, 10);
    std::vector<uint16_t> wb(wf.size());
    for (size_t i = 0; i < wb.size(); ++i) wb[i] = f32_to_bf16(wf[i]);
    const MatrixView view =
        dt == DType::kF32 ? f32_view(wf, n, k) : MatrixView{DType::kBF16, wb.data(), n, k};
    // Sums of m or n products of values in [-1, 1]: float32 reordering error ~ eps * terms.
    const double tol_dx = 4.0 * FLT_EPSILON * static_cast<double>(n);
    const double tol_dw = 4.0 * FLT_EPSILON * static_cast<double>(m) + 4.0 * FLT_EPSILON;
    std::vector<float> a(static_cast<size_t>(m * k), 0.5f), b(a.size(), 0.5f);
    matmul_backward_input(dy.data(), m, view, a.data(), true);
    matmul_backward_input_fast(dy.data(), m, view, b.data(), true);
    EXPECT_TRUE(pg::testing::all_close(a.data(), b.data(), m * k, tol_dx)) << dtype_name(dt);
    matmul_backward_input(dy.data(), m, view, a.data(), false);
    matmul_backward_input_fast(dy.data(), m, view, b.data(), false);
    EXPECT_TRUE(pg::testing::all_close(a.data(), b.data(), m * k, tol_dx)) << dtype_name(dt);
    std::vector<float> w1(static_cast<size_t>(n * k), 0.25f),
        w2 = w1, b1(static_cast<size_t>(n), 0.0f), b2 = b1;
    matmul_backward_weight(dy.data(), x.data(), m, n, k, w1.data(), b1.data());
    matmul_backward_weight_fast(dy.data(), x.data(), m, n, k, w2.data(), b2.data());
    EXPECT_TRUE(pg::testing::all_close(w1.data(), w2.data(), n * k, tol_dw));
    EXPECT_TRUE(pg::testing::all_close(b1.data(), b2.data(), n, tol_dw));
  }
}

TEST(BackwardTest, LayerNorm) {
  const int64_t rows = 3, dim = 11;
  const float eps = 1e-6f;
  auto x = random_vec(rows * dim, 11, 2.0f), g = random_vec(dim, 12), b = random_vec(dim, 13),
       r = random_vec(rows * dim, 14);
  auto forward = [&](double* l2) {
    std::vector<float> y(x.size());
    reference_kernels().layer_norm(x.data(), rows, dim, g.data(), b.data(), eps, y.data());
    return dot_loss(r, y, l2);
  };
  std::vector<float> dx(x.size()), dg(g.size(), 0.0f), db(b.size(), 0.0f);
  layer_norm_backward(x.data(), r.data(), rows, dim, g.data(), eps, dx.data(), dg.data(), db.data(),
                      false);
  check_gradient("layer_norm dx", forward, x, dx);
  check_gradient("layer_norm dgamma", forward, g, dg);
  check_gradient("layer_norm dbeta", forward, b, db);
}

TEST(BackwardTest, RmsNorm) {
  const int64_t rows = 3, dim = 13;
  const float eps = 1e-6f;
  auto x = random_vec(rows * dim, 15, 2.0f), w = random_vec(dim, 16),
       r = random_vec(rows * dim, 17);
  auto forward = [&](double* l2) {
    std::vector<float> y(x.size());
    reference_kernels().rms_norm(x.data(), rows, dim, w.data(), eps, y.data());
    return dot_loss(r, y, l2);
  };
  std::vector<float> dx(x.size()), dw(w.size(), 0.0f);
  rms_norm_backward(x.data(), r.data(), rows, dim, w.data(), eps, dx.data(), dw.data(), false);
  check_gradient("rms_norm dx", forward, x, dx);
  check_gradient("rms_norm dweight", forward, w, dw);
}

TEST(BackwardTest, GeluAndGatedGelu) {
  const int64_t n = 40;
  auto x = random_vec(n, 18, 4.0f), u = random_vec(n, 19, 2.0f), r = random_vec(n, 20);
  auto gelu = [&](double* l2) {
    std::vector<float> y(x.size());
    reference_kernels().gelu_tanh(x.data(), y.data(), n);
    return dot_loss(r, y, l2);
  };
  std::vector<float> dx(x.size());
  gelu_tanh_backward(x.data(), r.data(), dx.data(), n);
  check_gradient("gelu_tanh", gelu, x, dx);

  auto gated = [&](double* l2) {
    std::vector<float> y(x.size());
    reference_kernels().gelu_tanh_mul(x.data(), u.data(), y.data(), n);
    return dot_loss(r, y, l2);
  };
  std::vector<float> dg(x.size()), du(x.size());
  gelu_tanh_mul_backward(x.data(), u.data(), r.data(), dg.data(), du.data(), n);
  check_gradient("gelu_tanh_mul dgate", gated, x, dg);
  check_gradient("gelu_tanh_mul dup", gated, u, du);
}

TEST(BackwardTest, Softcap) {
  const int64_t n = 30;
  const float cap = 3.0f;
  auto x = random_vec(n, 21, 8.0f), r = random_vec(n, 22);
  auto forward = [&](double* l2) {
    std::vector<float> y(x);
    reference_kernels().softcap(y.data(), n, cap);
    return dot_loss(r, y, l2);
  };
  std::vector<float> y(x);
  reference_kernels().softcap(y.data(), n, cap);
  std::vector<float> dx(x.size());
  softcap_backward(y.data(), r.data(), dx.data(), n, cap);
  check_gradient("softcap", forward, x, dx);
}

TEST(BackwardTest, Rope) {
  const int64_t rows = 4, heads = 2, D = 8, stride = heads * D + 3;  // padded rows
  const std::vector<int64_t> pos = {1, 2, 7, 300};
  auto x = random_vec(rows * stride, 23), r = random_vec(rows * stride, 24);
  auto forward = [&](double* l2) {
    std::vector<float> y(x);
    reference_kernels().rope(y.data(), rows, stride, heads, D, pos.data(), 10000.0f);
    return dot_loss(r, y, l2);
  };
  std::vector<float> dx(r);
  rope_backward(dx.data(), rows, stride, heads, D, pos.data(), 10000.0f);
  check_gradient("rope", forward, x, dx);
}

struct AttnCase {
  const char* name;
  AttentionParams p;
};

std::vector<AttnCase> attention_cases() {
  std::vector<AttnCase> cases;
  AttentionParams a;
  a.num_queries = a.num_keys = 9;
  a.num_heads = 4;
  a.num_kv_heads = 2;
  a.head_dim = 6;
  a.q_stride = a.out_stride = 4 * 6;
  a.kv_stride = 2 * 6;
  a.causal = true;
  a.prefix_len = 4;
  a.scale = 0.4f;
  cases.push_back({"prefix-LM GQA", a});
  a.sliding_window = 3;
  a.softcap = 2.0f;
  cases.push_back({"prefix-LM window softcap", a});
  AttentionParams b;
  b.num_queries = b.num_keys = 7;
  b.num_heads = b.num_kv_heads = 3;
  b.head_dim = 5;
  b.q_stride = b.kv_stride = b.out_stride = 15;
  b.scale = 1.0f / std::sqrt(5.0f);
  cases.push_back({"bidirectional MHA", b});
  return cases;
}

TEST(BackwardTest, AttentionForwardMatchesKernel) {
  for (const AttnCase& c : attention_cases()) {
    const AttentionParams& p = c.p;
    auto q = random_vec(p.num_queries * p.q_stride, 30),
         k = random_vec(p.num_keys * p.kv_stride, 31), v = random_vec(p.num_keys * p.kv_stride, 32);
    std::vector<float> want(static_cast<size_t>(p.num_queries * p.out_stride)), got(want.size());
    std::vector<float> probs(static_cast<size_t>(p.num_heads * p.num_queries * p.num_keys));
    reference_kernels().attention(p, q.data(), k.data(), v.data(), want.data());
    attention_forward(p, q.data(), k.data(), v.data(), got.data(), probs.data());
    EXPECT_TRUE(
        pg::testing::all_close(want.data(), got.data(), static_cast<int64_t>(want.size()), 1e-6))
        << c.name;
    for (int64_t row = 0; row < p.num_heads * p.num_queries; ++row) {
      double s = 0;
      for (int64_t j = 0; j < p.num_keys; ++j)
        s += probs[static_cast<size_t>(row * p.num_keys + j)];
      EXPECT_NEAR(s, 1.0, 1e-5) << c.name << " row " << row;
    }
  }
}

TEST(BackwardTest, Attention) {
  for (const AttnCase& c : attention_cases()) {
    const AttentionParams& p = c.p;
    auto q = random_vec(p.num_queries * p.q_stride, 40),
         k = random_vec(p.num_keys * p.kv_stride, 41), v = random_vec(p.num_keys * p.kv_stride, 42),
         r = random_vec(p.num_queries * p.out_stride, 43);
    auto forward = [&](double* l2) {
      std::vector<float> y(r.size());
      reference_kernels().attention(p, q.data(), k.data(), v.data(), y.data());
      return dot_loss(r, y, l2);
    };
    std::vector<float> out(r.size()),
        probs(static_cast<size_t>(p.num_heads * p.num_queries * p.num_keys));
    attention_forward(p, q.data(), k.data(), v.data(), out.data(), probs.data());
    std::vector<float> dq(q.size()), dk(k.size()), dv(v.size());
    attention_backward(p, q.data(), k.data(), v.data(), probs.data(), r.data(), dq.data(),
                       dk.data(), dv.data());
    const std::string n = c.name;
    check_gradient((n + " dq").c_str(), forward, q, dq);
    check_gradient((n + " dk").c_str(), forward, k, dk);
    check_gradient((n + " dv").c_str(), forward, v, dv);
  }
}

}  // namespace
}  // namespace pg::kernels
