// Named intermediate tensors (llama.cpp's habit): when a dump folder is set, from
// set_dump_dir() or the PG_DUMP_DIR environment variable, every traced tensor is written
// there as NAME.npy, so a run can be diffed against a reference layer by layer.
#pragma once

#include <string>

#include "tensor/tensor.h"

namespace pg::model {

void set_dump_dir(const std::string& dir);  // "" turns dumping off
bool tracing();
void trace(const std::string& name, const float* data, const Shape& shape);
inline void trace(const std::string& name, const Tensor& t) {
  if (tracing()) trace(name, t.data(), t.shape());
}

}  // namespace pg::model
