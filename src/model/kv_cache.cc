#include "model/kv_cache.h"

namespace pg::model {

KvCache::KvCache(int64_t num_layers, int64_t capacity, int64_t width)
    : capacity_(capacity), width_(width) {
  k_.reserve(static_cast<size_t>(num_layers));
  v_.reserve(static_cast<size_t>(num_layers));
  for (int64_t i = 0; i < num_layers; ++i) {
    k_.emplace_back(Shape{capacity, width});
    v_.emplace_back(Shape{capacity, width});
  }
}

int64_t KvCache::bytes() const {
  return 2 * static_cast<int64_t>(k_.size()) * capacity_ * width_ *
         static_cast<int64_t>(sizeof(float));
}

}  // namespace pg::model
