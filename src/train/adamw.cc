#include "train/adamw.h"

#include <cmath>

#include "base/parallel.h"

namespace pg::train {

AdamW::AdamW(std::vector<Param*> params, const AdamWConfig& config)
    : params_(std::move(params)), config_(config) {
  for (Param* p : params_) {
    m_.emplace_back(Shape{p->numel()});
    v_.emplace_back(Shape{p->numel()});
  }
}

void AdamW::step(double lr) {
  ++steps_;
  const double t = static_cast<double>(steps_);
  const float b1 = static_cast<float>(config_.beta1), b2 = static_cast<float>(config_.beta2);
  const double bc1 = 1.0 - std::pow(config_.beta1, t), bc2 = 1.0 - std::pow(config_.beta2, t);
  const float step_size = static_cast<float>(lr / bc1);
  const float bc2_sqrt = static_cast<float>(std::sqrt(bc2));
  const float eps = static_cast<float>(config_.eps);
  for (size_t i = 0; i < params_.size(); ++i) {
    Param& p = *params_[i];
    const float decay = p.decay ? static_cast<float>(1.0 - lr * config_.weight_decay) : 1.0f;
    float* w = p.value.data();
    const float* g = p.grad.data();
    float* m = m_[i].data();
    float* v = v_[i].data();
    parallel_for(p.numel(), 4096, [&](int64_t a, int64_t b) {
      for (int64_t j = a; j < b; ++j) {
        w[j] *= decay;
        m[j] = b1 * m[j] + (1.0f - b1) * g[j];
        v[j] = b2 * v[j] + (1.0f - b2) * g[j] * g[j];
        w[j] -= step_size * m[j] / (std::sqrt(v[j]) / bc2_sqrt + eps);
      }
    });
  }
}

double global_grad_norm(const std::vector<Param*>& params) {
  double s = 0.0;
  for (const Param* p : params) {
    const float* g = p->grad.data();
    for (int64_t j = 0; j < p->numel(); ++j) s += static_cast<double>(g[j]) * g[j];
  }
  return std::sqrt(s);
}

void scale_grads(const std::vector<Param*>& params, float s) {
  for (Param* p : params) {
    float* g = p->grad.data();
    for (int64_t j = 0; j < p->numel(); ++j) g[j] *= s;
  }
}

double clip_grad_norm(const std::vector<Param*>& params, double max_norm) {
  const double norm = global_grad_norm(params);
  if (max_norm > 0.0) {
    const double coef = max_norm / (norm + 1e-6);
    if (coef < 1.0) scale_grads(params, static_cast<float>(coef));
  }
  return norm;
}

double Schedule::at(int64_t s) const {
  if (warmup > 0 && s < warmup)
    return lr * static_cast<double>(s + 1) / static_cast<double>(warmup);
  const int64_t decay_steps = std::max<int64_t>(1, total - warmup);
  const double progress =
      std::min(1.0, static_cast<double>(s - warmup) / static_cast<double>(decay_steps));
  return min_lr + 0.5 * (lr - min_lr) * (1.0 + std::cos(M_PI * progress));
}

}  // namespace pg::train
