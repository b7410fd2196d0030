#include "kernels/onednn.h"

#include <map>
#include <mutex>
#include <oneapi/dnnl/dnnl.hpp>
#include <tuple>
#include <vector>

#include "base/parallel.h"
#include "tensor/dtype.h"

namespace pg::kernels {
namespace {

using dt = dnnl::memory::data_type;

dnnl::engine& cpu_engine() {
  static dnnl::engine engine(dnnl::engine::kind::cpu, 0);
  return engine;
}

// Primitives are costly to create: keep one per (m, n, k, dtype, bias).
struct Key {
  int64_t m, n, k;
  bool bf16, bias;
  int64_t ldy;  // floats between rows of y (>= n)
  bool operator<(const Key& o) const {
    return std::tie(m, n, k, bf16, bias, ldy) < std::tie(o.m, o.n, o.k, o.bf16, o.bias, o.ldy);
  }
};

struct Entry {
  dnnl::matmul prim;
  dnnl::memory::desc src, wei, bias, dst, scratchpad;
};

Entry* get(const Key& key) {
  static std::mutex mu;
  static std::map<Key, Entry> cache;
  std::lock_guard<std::mutex> lock(mu);
  auto it = cache.find(key);
  if (it != cache.end()) return &it->second;
  const dt in = key.bf16 ? dt::bf16 : dt::f32;
  Entry e;
  e.src = dnnl::memory::desc({key.m, key.k}, in, dnnl::memory::dims{key.k, 1});
  // W is [n, k] row-major: as the [k, n] operand its strides are {1, k}.
  e.wei = dnnl::memory::desc({key.k, key.n}, in, dnnl::memory::dims{1, key.k});
  e.dst = dnnl::memory::desc({key.m, key.n}, dt::f32, dnnl::memory::dims{key.ldy, 1});
  if (key.bias) e.bias = dnnl::memory::desc({1, key.n}, dt::f32, dnnl::memory::dims{key.n, 1});
  try {
    auto desc = key.bias ? dnnl::matmul::desc(e.src, e.wei, e.bias, e.dst)
                         : dnnl::matmul::desc(e.src, e.wei, e.dst);
    // The primitive is shared by every thread that runs a model; with the library's own
    // scratchpad, concurrent executions would share one buffer. Each call brings its own.
    dnnl::primitive_attr attr;
    attr.set_scratchpad_mode(dnnl::scratchpad_mode::user);
    dnnl::matmul::primitive_desc pd(desc, attr, cpu_engine());
    e.scratchpad = pd.scratchpad_desc();
    e.prim = dnnl::matmul(pd);
  } catch (const dnnl::error&) {
    return nullptr;
  }
  return &cache.emplace(key, std::move(e)).first->second;
}

bool run(const Key& key, const void* x, const void* w, const float* bias, float* y) {
  Entry* e = get(key);
  if (e == nullptr) return false;
  try {
    dnnl::stream stream(cpu_engine());
    std::unordered_map<int, dnnl::memory> args = {
        {DNNL_ARG_SRC, dnnl::memory(e->src, cpu_engine(), const_cast<void*>(x))},
        {DNNL_ARG_WEIGHTS, dnnl::memory(e->wei, cpu_engine(), const_cast<void*>(w))},
        {DNNL_ARG_DST, dnnl::memory(e->dst, cpu_engine(), y)}};
    if (key.bias)
      args[DNNL_ARG_BIAS] = dnnl::memory(e->bias, cpu_engine(), const_cast<float*>(bias));
    thread_local std::vector<uint8_t> scratch;
    const size_t scratch_bytes = e->scratchpad.get_size();
    if (scratch.size() < scratch_bytes) scratch.resize(scratch_bytes);
    args[DNNL_ARG_SCRATCHPAD] = dnnl::memory(e->scratchpad, cpu_engine(), scratch.data());
    e->prim.execute(stream, args);
    stream.wait();
  } catch (const dnnl::error&) {
    return false;
  }
  return true;
}

}  // namespace

bool onednn_matmul_bf16(const float* x, int64_t m, const uint16_t* w, int64_t n, int64_t k,
                        const float* bias, float* y) {
  // x rounded to bf16, in a buffer kept per thread (no allocation or page faults per call).
  thread_local std::vector<uint16_t> xb;
  if (xb.size() < static_cast<size_t>(m * k)) xb.resize(static_cast<size_t>(m * k));
  round_to_bf16(x, m * k, xb.data());
  return run({m, n, k, true, bias != nullptr, n}, xb.data(), w, bias, y);
}

void round_to_bf16(const float* x, int64_t n, uint16_t* out) {
  parallel_for(n, 1 << 16, [&](int64_t b, int64_t e) {
    for (int64_t i = b; i < e; ++i) out[i] = f32_to_bf16(x[i]);
  });
}

bool onednn_matmul_bf16_rounded(const uint16_t* xb, int64_t m, const uint16_t* w, int64_t n,
                                int64_t k, const float* bias, float* y, int64_t ldy) {
  return run({m, n, k, true, bias != nullptr, ldy}, xb, w, bias, y);
}

bool onednn_matmul_f32(const float* x, int64_t m, const float* w, int64_t n, int64_t k,
                       const float* bias, float* y) {
  return run({m, n, k, false, bias != nullptr, n}, x, w, bias, y);
}

}  // namespace pg::kernels
