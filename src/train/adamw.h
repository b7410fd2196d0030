// AdamW with decoupled weight decay (PyTorch's torch.optim.AdamW update, in float32),
// global-norm gradient clipping, and the learning-rate schedule: linear warm-up, then
// cosine decay to a floor.
#pragma once

#include <cstdint>
#include <vector>

#include "train/params.h"

namespace pg::train {

struct AdamWConfig {
  double beta1 = 0.9, beta2 = 0.999, eps = 1e-8;
  double weight_decay = 0.0;  // applied to parameters with Param::decay (matrices)
};

class AdamW {
 public:
  // Moments (zero) for each parameter's value: [p.numel()].
  AdamW(std::vector<Param*> params, const AdamWConfig& config);

  // One update of every parameter from its gradient (the step count advances first):
  //   p *= 1 - lr * wd;  m = b1 m + (1 - b1) g;  v = b2 v + (1 - b2) g^2;
  //   p -= lr / (1 - b1^t) * m / (sqrt(v) / sqrt(1 - b2^t) + eps).
  void step(double lr);

  int64_t steps() const { return steps_; }
  void set_steps(int64_t t) { steps_ = t; }
  const std::vector<Param*>& params() const { return params_; }
  Tensor& m(size_t i) { return m_[i]; }
  Tensor& v(size_t i) { return v_[i]; }
  const Tensor& m(size_t i) const { return m_[i]; }
  const Tensor& v(size_t i) const { return v_[i]; }

 private:
  std::vector<Param*> params_;
  AdamWConfig config_;
  std::vector<Tensor> m_, v_;
  int64_t steps_ = 0;
};

// sqrt(sum of squares) over every gradient, accumulated in double in a fixed order.
double global_grad_norm(const std::vector<Param*>& params);
// g *= s for every gradient.
void scale_grads(const std::vector<Param*>& params, float s);
// Clips to max_norm (PyTorch's clip_grad_norm_: scale by max_norm / (norm + 1e-6) when
// that is < 1); returns the norm before clipping. max_norm <= 0: no clipping.
double clip_grad_norm(const std::vector<Param*>& params, double max_norm);

struct Schedule {
  double lr = 1e-4;     // peak
  double min_lr = 0.0;  // floor of the cosine
  int64_t warmup = 0;   // steps of linear warm-up (lr * (s + 1) / warmup)
  int64_t total = 1;    // steps in all
  // Learning rate of update s (0-based).
  double at(int64_t s) const;
};

}  // namespace pg::train
