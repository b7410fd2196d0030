#include "kernels/profile.h"

#include <algorithm>
#include <array>
#include <atomic>
#include <chrono>
#include <cstdio>

#include "tensor/dtype.h"

namespace pg::kernels {
namespace {

using Clock = std::chrono::steady_clock;

// Counter slots: the elementwise ops, then matmul by (dtype, prefill).
enum Slot : int {
  kLayerNorm,
  kRmsNorm,
  kGelu,
  kGeluMul,
  kRope,
  kSoftcap,
  kAdd,
  kScale,
  kArgmax,
  kAttention,
  kMatmul0,  // + 2 * dtype index + (m > 12)
};
constexpr int kDTypes = 16;
constexpr int kSlots = kMatmul0 + 2 * kDTypes;
constexpr int64_t kDecodeRows = 12;

struct Counter {
  std::atomic<long long> calls{0}, nanos{0};
};
std::array<Counter, kSlots> g_counters;
std::atomic<const KernelTable*> g_inner{nullptr};

const KernelTable& inner() { return *g_inner.load(std::memory_order_relaxed); }

// Times one call; `products` counts it as that many calls (matmul_many: one per matrix).
struct Timer {
  explicit Timer(int s, int products = 1) : slot(s), calls(products), t0(Clock::now()) {}
  ~Timer() {
    const auto ns = std::chrono::duration_cast<std::chrono::nanoseconds>(Clock::now() - t0).count();
    g_counters[static_cast<size_t>(slot)].calls.fetch_add(calls, std::memory_order_relaxed);
    g_counters[static_cast<size_t>(slot)].nanos.fetch_add(ns, std::memory_order_relaxed);
  }
  int slot, calls;
  Clock::time_point t0;
};

std::string slot_name(int s) {
  switch (s) {
    case kLayerNorm: return "layer_norm";
    case kRmsNorm: return "rms_norm";
    case kGelu: return "gelu_tanh";
    case kGeluMul: return "gelu_tanh_mul";
    case kRope: return "rope";
    case kSoftcap: return "softcap";
    case kAdd: return "add";
    case kScale: return "scale";
    case kArgmax: return "argmax";
    case kAttention: return "attention";
    default: break;
  }
  const int d = (s - kMatmul0) / 2;
  const bool prefill = ((s - kMatmul0) % 2) == 1;
  return std::string("matmul ") + dtype_name(static_cast<DType>(d)) +
         (prefill ? " m>12" : " m<=12");
}

void matmul(const float* x, int64_t m, const MatrixView& w, const float* bias, float* y) {
  const int d = std::clamp(static_cast<int>(w.dtype), 0, kDTypes - 1);
  Timer t(kMatmul0 + 2 * d + (m > kDecodeRows ? 1 : 0));
  inner().matmul(x, m, w, bias, y);
}
void matmul_many(const float* x, int64_t m, const MatmulOutput* out, int count) {
  const int d = count > 0 ? std::clamp(static_cast<int>(out[0].w.dtype), 0, kDTypes - 1) : 0;
  Timer t(kMatmul0 + 2 * d + (m > kDecodeRows ? 1 : 0), count);
  inner().matmul_many(x, m, out, count);
}
// Counted as its two products (where it is not fused, gelu_tanh_mul's time with them).
void matmul_gelu_mul(const float* x, int64_t m, const MatrixView& gate, const MatrixView& up,
                     float* y) {
  const int d = std::clamp(static_cast<int>(gate.dtype), 0, kDTypes - 1);
  Timer t(kMatmul0 + 2 * d + (m > kDecodeRows ? 1 : 0), 2);
  inner().matmul_gelu_mul(x, m, gate, up, y);
}
// Counted as its three products (with the gating where it is not fused).
void mlp(const float* x, int64_t m, const MatrixView& gate, const MatrixView& up,
         const MatrixView& down, float* hidden, float* y) {
  const int d = std::clamp(static_cast<int>(gate.dtype), 0, kDTypes - 1);
  Timer t(kMatmul0 + 2 * d + (m > kDecodeRows ? 1 : 0), 3);
  inner().mlp(x, m, gate, up, down, hidden, y);
}
void layer_norm(const float* x, int64_t rows, int64_t dim, const float* gamma, const float* beta,
                float eps, float* y) {
  Timer t(kLayerNorm);
  inner().layer_norm(x, rows, dim, gamma, beta, eps, y);
}
void rms_norm(const float* x, int64_t rows, int64_t dim, const float* weight, float eps, float* y) {
  Timer t(kRmsNorm);
  inner().rms_norm(x, rows, dim, weight, eps, y);
}
void gelu_tanh(const float* x, float* y, int64_t n) {
  Timer t(kGelu);
  inner().gelu_tanh(x, y, n);
}
void gelu_tanh_mul(const float* gate, const float* up, float* y, int64_t n) {
  Timer t(kGeluMul);
  inner().gelu_tanh_mul(gate, up, y, n);
}
void rope(float* x, int64_t rows, int64_t stride, int64_t num_heads, int64_t head_dim,
          const int64_t* positions, float theta) {
  Timer t(kRope);
  inner().rope(x, rows, stride, num_heads, head_dim, positions, theta);
}
void softcap(float* x, int64_t n, float cap) {
  Timer t(kSoftcap);
  inner().softcap(x, n, cap);
}
void add(float* y, const float* x, int64_t n) {
  Timer t(kAdd);
  inner().add(y, x, n);
}
void scale(float* x, int64_t n, float s) {
  Timer t(kScale);
  inner().scale(x, n, s);
}
int64_t argmax(const float* x, int64_t n) {
  Timer t(kArgmax);
  return inner().argmax(x, n);
}
void attention(const AttentionParams& p, const float* q, const void* k, const void* v, float* out) {
  Timer t(kAttention);
  inner().attention(p, q, k, v, out);
}

}  // namespace

const KernelTable& profiling_kernels(const KernelTable& table) {
  g_inner.store(&table);
  static const KernelTable profiled = {"profile",     matmul,     matmul_many, matmul_gelu_mul,
                                       mlp,           layer_norm, rms_norm,    gelu_tanh,
                                       gelu_tanh_mul, rope,       softcap,     add,
                                       scale,         argmax,     attention};
  return profiled;
}

std::vector<OpProfile> op_profile() {
  std::vector<OpProfile> out;
  for (int s = 0; s < kSlots; ++s) {
    const long long calls = g_counters[static_cast<size_t>(s)].calls.load();
    if (calls == 0) continue;
    out.push_back({slot_name(s), calls,
                   static_cast<double>(g_counters[static_cast<size_t>(s)].nanos.load()) * 1e-9});
  }
  std::sort(out.begin(), out.end(),
            [](const OpProfile& a, const OpProfile& b) { return a.seconds > b.seconds; });
  return out;
}

void reset_op_profile() {
  for (Counter& c : g_counters) {
    c.calls.store(0);
    c.nanos.store(0);
  }
}

}  // namespace pg::kernels
