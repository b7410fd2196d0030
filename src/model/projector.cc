#include "model/projector.h"

#include "kernels/kernels.h"
#include "model/trace.h"

namespace pg::model {

Tensor project(const ProjectorWeights& w, const Tensor& x) {
  const int64_t N = x.dim(0);
  Tensor y({N, w.linear.rows});
  kernels::kernels().matmul(x.data(), N, w.linear, w.linear_bias.data(), y.data());
  trace("projector", y);
  return y;
}

}  // namespace pg::model
