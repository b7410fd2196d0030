#include "train/lm_loss.h"

#include <cmath>

#include "kernels/backward.h"
#include "kernels/kernels.h"

namespace pg::train {

// hidden: [m, H] -> [m, V].
Tensor lm_logits(const ModelParams& p, const float* hidden, int64_t m) {
  const kernels::KernelTable& k = kernels::kernels();
  const MatrixView& w = p.text.lm_head->view;
  Tensor logits({m, w.rows});
  k.matmul(hidden, m, w, nullptr, logits.data());
  const float cap = p.config().text.final_logit_softcapping;
  if (cap > 0.0f) k.softcap(logits.data(), logits.numel(), cap);
  return logits;
}

// hidden, dhidden: [T, H]; ids: [T].
LossSum lm_loss(ModelParams& p, const Tensor& hidden, const std::vector<int>& ids, int64_t first,
                float grad_scale, Tensor* dhidden) {
  const int64_t T = static_cast<int64_t>(ids.size()), H = hidden.dim(1);
  LossSum out;
  const int64_t n = T - 1 - first;
  if (n <= 0) return out;
  Tensor logits = lm_logits(p, hidden.row(first), n);  // [n, V]
  const int64_t V = logits.dim(1);
  Tensor dz;
  if (dhidden != nullptr) dz = Tensor({n, V});
  const float cap = p.config().text.final_logit_softcapping;
  for (int64_t r = 0; r < n; ++r) {
    const float* z = logits.row(r);
    const int target = ids[static_cast<size_t>(first + r + 1)];
    float mx = z[0];
    for (int64_t v = 1; v < V; ++v) mx = std::max(mx, z[v]);
    double sum = 0.0;
    for (int64_t v = 0; v < V; ++v) sum += std::exp(static_cast<double>(z[v] - mx));
    const double lse = static_cast<double>(mx) + std::log(sum);
    out.nll += lse - static_cast<double>(z[target]);
    if (dhidden == nullptr) continue;
    // d nll / d z_v = softmax_v - [v == target], through the soft-cap: * (1 - (z/cap)^2).
    float* d = dz.row(r);
    for (int64_t v = 0; v < V; ++v) {
      float g = static_cast<float>(std::exp(static_cast<double>(z[v]) - lse));
      if (v == target) g -= 1.0f;
      g *= grad_scale;
      if (cap > 0.0f) {
        const float t = z[v] / cap;
        g *= 1.0f - t * t;
      }
      d[v] = g;
    }
  }
  out.tokens = n;
  if (dhidden == nullptr) return out;
  Param& w = *p.text.lm_head;
  kernels::matmul_backward_input_fast(dz.data(), n, w.view, dhidden->row(first), false);
  if (w.trainable)
    kernels::matmul_backward_weight_fast(dz.data(), hidden.row(first), n, V, H, w.grad.data(),
                                         nullptr);
  return out;
}

}  // namespace pg::train
