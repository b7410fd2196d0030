// Google Benchmark microbenchmarks of the hot kernels at PaliGemma's shapes.
//   build/bench/kernels_bench --benchmark_format=json
// Counters: FLOP/s for products, bytes/s of weights streamed for decode-shaped products.
#include <benchmark/benchmark.h>

#include <algorithm>
#include <random>
#include <vector>

#include "base/memory.h"
#include "base/parallel.h"
#include "kernels/kernels.h"
#include "kernels/onednn.h"
#include "kernels/quant.h"
#include "tensor/dtype.h"

namespace {

// Weights live on cache-line boundaries, as the engine keeps them (base/memory.h).
struct Weights {
  pg::LineAlignedVector<float> f32;
  pg::LineAlignedVector<uint16_t> bf16;
  pg::kernels::QuantizedMatrix q8, q4;
  pg::MatrixView view(pg::DType dt) {
    switch (dt) {
      case pg::DType::kF32: return {dt, f32.data(), rows, cols};
      case pg::DType::kBF16: return {dt, bf16.data(), rows, cols, nullptr, true};
      case pg::DType::kI8: {
        auto v = q8.view();
        v.low_precision = true;
        return v;
      }
      default: {
        auto v = q4.view();
        v.low_precision = true;
        return v;
      }
    }
  }
  int64_t rows, cols;
};

Weights make(int64_t n, int64_t k, int seed = 1) {
  Weights w;
  w.rows = n;
  w.cols = k;
  std::mt19937 rng(static_cast<unsigned>(seed));
  std::normal_distribution<float> d(0, 0.02f);
  w.f32.resize(static_cast<size_t>(n * k));
  for (float& v : w.f32) v = d(rng);
  const pg::MatrixView src{pg::DType::kF32, w.f32.data(), n, k};
  w.bf16 = pg::kernels::to_bf16(src);
  w.q8 = pg::kernels::quantize_q8(src);
  w.q4 = pg::kernels::quantize_q4(src);
  return w;
}

void BM_matmul(benchmark::State& state, pg::DType dt, int64_t m, int64_t n, int64_t k) {
  static std::vector<std::pair<std::pair<int64_t, int64_t>, Weights>> cache;
  Weights* w = nullptr;
  for (auto& [key, value] : cache) {
    if (key == std::make_pair(n, k)) w = &value;
  }
  if (w == nullptr) w = &cache.emplace_back(std::make_pair(n, k), make(n, k)).second;
  std::vector<float> x(static_cast<size_t>(m * k), 0.1f), y(static_cast<size_t>(m * n));
  const pg::MatrixView v = w->view(dt);
  for (auto _ : state) {
    pg::kernels::fast_kernels().matmul(x.data(), m, v, nullptr, y.data());
    benchmark::DoNotOptimize(y.data());
  }
  state.counters["FLOP/s"] =
      benchmark::Counter(2.0 * m * n * k, benchmark::Counter::kIsIterationInvariantRate);
  state.counters["weight_bytes/s"] = benchmark::Counter(
      static_cast<double>(v.total_bytes()), benchmark::Counter::kIsIterationInvariantRate);
}

// The products of one x by several matrices (attention's q, k, v; the MLP's gate, up): one
// matmul_many call (`many`), which packs x once and splits all the columns over the threads
// together, or one matmul after the other. Each matrix its own weights (seeds differ).
void BM_matmul_group(benchmark::State& state, pg::DType dt, bool many, int64_t m, int64_t k,
                     std::vector<int64_t> ns) {
  // (keyed by k and the column counts; the many and each cases share their weights)
  static std::vector<std::pair<std::vector<int64_t>, std::vector<Weights>>> cache;
  std::vector<int64_t> key = ns;
  key.push_back(k);
  std::vector<Weights>* ws = nullptr;
  for (auto& [kk, value] : cache) {
    if (kk == key) ws = &value;
  }
  if (ws == nullptr) {
    ws = &cache.emplace_back(key, std::vector<Weights>{}).second;
    for (size_t i = 0; i < ns.size(); ++i) ws->push_back(make(ns[i], k, static_cast<int>(i + 1)));
  }
  std::vector<float> x(static_cast<size_t>(m * k), 0.1f);
  std::vector<std::vector<float>> y;
  std::vector<pg::kernels::MatmulOutput> out;
  double flop = 0;
  for (size_t i = 0; i < ns.size(); ++i) {
    y.emplace_back(static_cast<size_t>(m * ns[i]));
    out.push_back({(*ws)[i].view(dt), nullptr, y.back().data()});
    flop += 2.0 * m * ns[i] * k;
  }
  const pg::kernels::KernelTable& table = pg::kernels::fast_kernels();
  for (auto _ : state) {
    if (many) {
      table.matmul_many(x.data(), m, out.data(), static_cast<int>(out.size()));
    } else {
      for (const auto& o : out) table.matmul(x.data(), m, o.w, o.bias, o.y);
    }
    benchmark::ClobberMemory();
  }
  state.counters["FLOP/s"] =
      benchmark::Counter(flop, benchmark::Counter::kIsIterationInvariantRate);
}

// The Gemma MLP, down(gelu_tanh(gate x) * up x): one mlp call (`fused`: in bf16, the
// gating hands its outputs to the down projection already packed), or matmul_gelu_mul
// into a buffer and then the down projection.
void BM_mlp(benchmark::State& state, pg::DType dt, bool fused, int64_t m, int64_t h, int64_t f) {
  static std::vector<std::pair<std::pair<int64_t, int64_t>, std::vector<Weights>>> cache;
  std::vector<Weights>* ws = nullptr;
  for (auto& [key, value] : cache) {
    if (key == std::make_pair(h, f)) ws = &value;
  }
  if (ws == nullptr) {
    ws = &cache.emplace_back(std::make_pair(h, f), std::vector<Weights>{}).second;
    ws->push_back(make(f, h, 1));
    ws->push_back(make(f, h, 2));
    ws->push_back(make(h, f, 3));
  }
  const pg::MatrixView gate = (*ws)[0].view(dt), up = (*ws)[1].view(dt), down = (*ws)[2].view(dt);
  std::vector<float> x(static_cast<size_t>(m * h), 0.1f), hidden(static_cast<size_t>(m * f)),
      y(static_cast<size_t>(m * h));
  const pg::kernels::KernelTable& table = pg::kernels::fast_kernels();
  for (auto _ : state) {
    if (fused) {
      table.mlp(x.data(), m, gate, up, down, hidden.data(), y.data());
    } else {
      table.matmul_gelu_mul(x.data(), m, gate, up, hidden.data());
      table.matmul(hidden.data(), m, down, nullptr, y.data());
    }
    benchmark::ClobberMemory();
  }
  state.counters["FLOP/s"] =
      benchmark::Counter(6.0 * m * h * f, benchmark::Counter::kIsIterationInvariantRate);
}

// The same bf16 product on oneDNN's GEMM (which the fast table used before its own
// vdpbf16ps product), for comparison: its row-major weights are copied into its blocked
// layout at every call.
void BM_matmul_onednn_bf16(benchmark::State& state, int64_t m, int64_t n, int64_t k) {
  const std::vector<float> w(static_cast<size_t>(n * k), 0.01f);
  const pg::LineAlignedVector<uint16_t> wb =
      pg::kernels::to_bf16(pg::MatrixView{pg::DType::kF32, w.data(), n, k});
  std::vector<float> x(static_cast<size_t>(m * k), 0.1f), y(static_cast<size_t>(m * n));
  for (auto _ : state) {
    pg::kernels::onednn_matmul_bf16(x.data(), m, wb.data(), n, k, nullptr, y.data());
    benchmark::DoNotOptimize(y.data());
  }
  state.counters["FLOP/s"] =
      benchmark::Counter(2.0 * m * n * k, benchmark::Counter::kIsIterationInvariantRate);
}

// Own copies of matrices (data and scales), as each layer of the model has, so that a
// sequence of products streams them from memory.
struct WeightCopies {
  std::vector<pg::LineAlignedVector<uint8_t>> data;
  std::vector<pg::LineAlignedVector<float>> scales;
  std::vector<pg::MatrixView> views;

  void add(const pg::MatrixView& one) {
    const auto* src = static_cast<const uint8_t*>(one.data);
    pg::MatrixView v = one;
    v.data = data.emplace_back(src, src + one.row_bytes() * one.rows).data();
    if (one.scales != nullptr) {
      const int64_t count = one.rows * pg::quant_blocks(one.cols);
      v.scales = scales.emplace_back(one.scales, one.scales + count).data();
    }
    views.push_back(v);
  }
  // One token (x of k_max values) through every view in turn, per iteration.
  void run(benchmark::State& state, int64_t k_max, int64_t n_max) const {
    std::vector<float> x(static_cast<size_t>(k_max), 0.1f), y(static_cast<size_t>(n_max));
    for (auto _ : state) {
      for (const pg::MatrixView& v : views) {
        pg::kernels::fast_kernels().matmul(x.data(), 1, v, nullptr, y.data());
        benchmark::DoNotOptimize(y.data());
      }
    }
  }
};

// Prefill products as the model meets them: the weights, x and y come from memory, not
// the caches (copies of one matrix, 96 MiB or more in all, each used once per pass with
// its own x and y).
void BM_matmul_cold(benchmark::State& state, pg::DType dt, int64_t m, int64_t n, int64_t k) {
  Weights w = make(n, k);
  const pg::MatrixView one = w.view(dt);
  const int64_t copies = std::max<int64_t>(2, (int64_t{96} << 20) / one.total_bytes() + 1);
  WeightCopies c;
  for (int64_t i = 0; i < copies; ++i) c.add(one);
  // Each product its own x and y too, as each layer has.
  std::vector<std::vector<float>> x(static_cast<size_t>(copies)), y(x.size());
  for (size_t i = 0; i < x.size(); ++i) {
    x[i].assign(static_cast<size_t>(m * k), 0.1f);
    y[i].assign(static_cast<size_t>(m * n), 0.0f);
  }
  for (auto _ : state) {
    for (size_t i = 0; i < c.views.size(); ++i) {
      pg::kernels::fast_kernels().matmul(x[i].data(), m, c.views[i], nullptr, y[i].data());
      benchmark::DoNotOptimize(y[i].data());
    }
  }
  state.counters["FLOP/s"] =
      benchmark::Counter(2.0 * m * n * k * copies, benchmark::Counter::kIsIterationInvariantRate);
}

// Decode as the model runs it: one token through enough copies of the up-projection
// (>= 512 MiB of weights) that nothing stays in cache, so this measures streaming from
// memory, as the engine's decode does, rather than from L3.
void BM_decode_stream(benchmark::State& state, pg::DType dt) {
  const int64_t n = 16384, k = 2048;
  static Weights base = make(n, k);
  const pg::MatrixView one = base.view(dt);
  const int64_t bytes = one.total_bytes();
  const int64_t copies = std::max<int64_t>(2, (int64_t{512} << 20) / bytes);
  WeightCopies copies_of;
  for (int64_t c = 0; c < copies; ++c) copies_of.add(one);
  copies_of.run(state, k, n);
  state.counters["weight_bytes/s"] = benchmark::Counter(
      static_cast<double>(bytes * copies), benchmark::Counter::kIsIterationInvariantRate);
}

// Decode through a stack of decoder layers with the model's own shapes, in its order
// (q, k, v, o, gate, up, down), enough layers (>= 512 MiB of weights) that nothing stays in
// cache: the small k/v products and the per-call start-up count as they do in the engine.
// gemma2: PaliGemma 2 3B (width 2304, 8 heads and 4 kv heads of 256, MLP 9216);
// gemma: PaliGemma 3B (width 2048, 8 heads and 1 kv head of 256, MLP 16384).
void BM_decode_layers(benchmark::State& state, pg::DType dt, bool gemma2) {
  const int64_t d = gemma2 ? 2304 : 2048, q = 2048, kv = gemma2 ? 1024 : 256,
                f = gemma2 ? 9216 : 16384;
  const std::pair<int64_t, int64_t> shapes[] = {{q, d}, {kv, d}, {kv, d}, {d, q},
                                                {f, d}, {f, d},  {d, f}};
  static std::vector<std::pair<std::pair<int64_t, int64_t>, Weights>> base;
  std::vector<pg::MatrixView> layer;
  int64_t layer_bytes = 0;
  for (const auto& nk : shapes) {
    Weights* w = nullptr;
    for (auto& [key, value] : base) {
      if (key == nk) w = &value;
    }
    if (w == nullptr) w = &base.emplace_back(nk, make(nk.first, nk.second)).second;
    layer.push_back(w->view(dt));
    layer_bytes += layer.back().total_bytes();
  }
  const int64_t layers = std::max<int64_t>(2, (int64_t{512} << 20) / layer_bytes);
  // Each layer's matrices get their own copies (data and scales), as in the model.
  WeightCopies copies;
  for (int64_t l = 0; l < layers; ++l) {
    for (const pg::MatrixView& one : layer) copies.add(one);
  }
  copies.run(state, f, f);
  state.counters["weight_bytes/s"] = benchmark::Counter(
      static_cast<double>(layer_bytes * layers), benchmark::Counter::kIsIterationInvariantRate);
  state.counters["products/s"] = benchmark::Counter(static_cast<double>(copies.views.size()),
                                                    benchmark::Counter::kIsIterationInvariantRate);
}

// Causal self-attention over a cache of S keys whose last T rows are the queries.
pg::kernels::AttentionParams attention_params(int64_t T, int64_t S, int64_t heads, int64_t kv_heads,
                                              int64_t D, float softcap) {
  pg::kernels::AttentionParams p;
  p.num_queries = T;
  p.num_keys = S;
  p.num_heads = heads;
  p.num_kv_heads = kv_heads;
  p.head_dim = D;
  p.q_stride = p.out_stride = heads * D;
  p.kv_stride = kv_heads * D;
  p.query_offset = S - T;
  p.prefix_len = S;
  p.causal = true;
  p.scale = 0.0625f;
  p.softcap = softcap;  // Gemma 2's attention logit soft-capping
  return p;
}

void BM_attention(benchmark::State& state, int64_t T, int64_t S, int64_t heads, int64_t kv_heads,
                  int64_t D, bool low_precision = false, float softcap = 0.0f) {
  std::vector<float> q(static_cast<size_t>(T * heads * D), 0.1f),
      kv(static_cast<size_t>(S * kv_heads * D), 0.1f);
  std::vector<float> out(static_cast<size_t>(T * heads * D));
  pg::kernels::AttentionParams p = attention_params(T, S, heads, kv_heads, D, softcap);
  p.low_precision = low_precision;  // bf16 products (the low-precision modes)
  for (auto _ : state) {
    pg::kernels::fast_kernels().attention(p, q.data(), kv.data(), kv.data(), out.data());
    benchmark::DoNotOptimize(out.data());
  }
  state.counters["FLOP/s"] =
      benchmark::Counter(4.0 * T * S * heads * D, benchmark::Counter::kIsIterationInvariantRate);
}

// Decode attention through every layer's own KV cache (as in the model, where a token's
// layers together read more cache than L3 holds): one query, S keys, `layers` caches, of
// float32 or (bf16_kv, the low-precision modes' cache) bf16.
void BM_attention_layers(benchmark::State& state, int64_t layers, int64_t S, int64_t heads,
                         int64_t kv_heads, int64_t D, float softcap, bool bf16_kv = false) {
  const auto cache = static_cast<size_t>(S * kv_heads * D);
  const size_t bytes = cache * (bf16_kv ? sizeof(uint16_t) : sizeof(float));
  std::vector<pg::LineAlignedVector<uint8_t>> k, v;
  for (int64_t l = 0; l < layers; ++l) {
    k.emplace_back(bytes), v.emplace_back(bytes);
    for (size_t i = 0; i < cache; ++i) {
      const float kx = 0.01f * static_cast<float>((i * 7 + static_cast<size_t>(l)) % 23) - 0.1f;
      const float vx = 0.01f * static_cast<float>((i * 5 + static_cast<size_t>(l)) % 19) - 0.1f;
      if (bf16_kv) {
        reinterpret_cast<uint16_t*>(k.back().data())[i] = pg::f32_to_bf16(kx);
        reinterpret_cast<uint16_t*>(v.back().data())[i] = pg::f32_to_bf16(vx);
      } else {
        reinterpret_cast<float*>(k.back().data())[i] = kx;
        reinterpret_cast<float*>(v.back().data())[i] = vx;
      }
    }
  }
  std::vector<float> q(static_cast<size_t>(heads * D), 0.1f);
  std::vector<float> out(static_cast<size_t>(heads * D));
  pg::kernels::AttentionParams p = attention_params(1, S, heads, kv_heads, D, softcap);
  p.kv_bf16 = bf16_kv;
  for (auto _ : state) {
    for (int64_t l = 0; l < layers; ++l) {
      pg::kernels::fast_kernels().attention(p, q.data(), k[static_cast<size_t>(l)].data(),
                                            v[static_cast<size_t>(l)].data(), out.data());
      benchmark::DoNotOptimize(out.data());
    }
  }
  state.counters["kv_bytes/s"] = benchmark::Counter(static_cast<double>(2 * bytes * layers),
                                                    benchmark::Counter::kIsIterationInvariantRate);
}

// Greedy decoding's choice over Gemma's vocabulary (257152 logits), per table: the
// reference's scan against the fast one.
void BM_argmax(benchmark::State& state, bool fast) {
  std::vector<float> logits(257152);
  std::mt19937 rng(3);
  std::normal_distribution<float> dist(0.0f, 3.0f);
  for (float& x : logits) x = dist(rng);
  const pg::kernels::KernelTable& table =
      fast ? pg::kernels::fast_kernels() : pg::kernels::reference_kernels();
  for (auto _ : state) benchmark::DoNotOptimize(table.argmax(logits.data(), 257152));
  state.counters["logits/s"] =
      benchmark::Counter(257152.0, benchmark::Counter::kIsIterationInvariantRate);
}

// Decode: one token through Gemma 2B's MLP up-projection (2048 -> 16384).
BENCHMARK_CAPTURE(BM_matmul, decode_f32_1x16384x2048, pg::DType::kF32, 1, 16384, 2048)
    ->UseRealTime();
BENCHMARK_CAPTURE(BM_matmul, decode_bf16_1x16384x2048, pg::DType::kBF16, 1, 16384, 2048)
    ->UseRealTime();
BENCHMARK_CAPTURE(BM_matmul, decode_q8_1x16384x2048, pg::DType::kI8, 1, 16384, 2048)->UseRealTime();
BENCHMARK_CAPTURE(BM_matmul, decode_q4_1x16384x2048, pg::DType::kU8, 1, 16384, 2048)->UseRealTime();
BENCHMARK_CAPTURE(BM_matmul, decode_q8_1x256x2048, pg::DType::kI8, 1, 256, 2048)->UseRealTime();
BENCHMARK_CAPTURE(BM_matmul, decode_q4_1x256x2048, pg::DType::kU8, 1, 256, 2048)->UseRealTime();
// PaliGemma 2 3B's gate/up (K = 2304: 4.5 groups of 16 blocks a row) against a K = 2048 twin.
BENCHMARK_CAPTURE(BM_matmul, decode_q4_1x9216x2304, pg::DType::kU8, 1, 9216, 2304)->UseRealTime();
BENCHMARK_CAPTURE(BM_matmul, decode_q4_1x8192x2048, pg::DType::kU8, 1, 8192, 2048)->UseRealTime();
// A product too small to be anything but its per-call cost (quantizing x, the threads' start).
BENCHMARK_CAPTURE(BM_matmul, decode_q4_1x16x2048, pg::DType::kU8, 1, 16, 2048)->UseRealTime();
BENCHMARK_CAPTURE(BM_matmul, decode_bf16_1x256x2048, pg::DType::kBF16, 1, 256, 2048)->UseRealTime();
BENCHMARK_CAPTURE(BM_decode_stream, f32, pg::DType::kF32)->UseRealTime();
BENCHMARK_CAPTURE(BM_decode_stream, bf16, pg::DType::kBF16)->UseRealTime();
BENCHMARK_CAPTURE(BM_decode_stream, q8, pg::DType::kI8)->UseRealTime();
BENCHMARK_CAPTURE(BM_decode_stream, q4, pg::DType::kU8)->UseRealTime();
BENCHMARK_CAPTURE(BM_decode_layers, gemma2_bf16, pg::DType::kBF16, true)->UseRealTime();
BENCHMARK_CAPTURE(BM_decode_layers, gemma2_q8, pg::DType::kI8, true)->UseRealTime();
BENCHMARK_CAPTURE(BM_decode_layers, gemma2_q4, pg::DType::kU8, true)->UseRealTime();
BENCHMARK_CAPTURE(BM_decode_layers, gemma_bf16, pg::DType::kBF16, false)->UseRealTime();
BENCHMARK_CAPTURE(BM_decode_layers, gemma_q8, pg::DType::kI8, false)->UseRealTime();
BENCHMARK_CAPTURE(BM_decode_layers, gemma_q4, pg::DType::kU8, false)->UseRealTime();
// Prefill / vision: SigLIP's MLP (256 x 1152 -> 4304).
BENCHMARK_CAPTURE(BM_matmul, vision_f32_256x4304x1152, pg::DType::kF32, 256, 4304, 1152)
    ->UseRealTime();
BENCHMARK_CAPTURE(BM_matmul, vision_bf16_256x4304x1152, pg::DType::kBF16, 256, 4304, 1152)
    ->UseRealTime();
BENCHMARK_CAPTURE(BM_matmul, vision_bf16_256x1152x1152, pg::DType::kBF16, 256, 1152, 1152)
    ->UseRealTime();
// 896 px: 4096 image tokens through SigLIP's fc1, 4106 prompt tokens through Gemma's down.
BENCHMARK_CAPTURE(BM_matmul, vision_bf16_4096x4304x1152, pg::DType::kBF16, 4096, 4304, 1152)
    ->UseRealTime();
BENCHMARK_CAPTURE(BM_matmul, prefill_bf16_4106x2048x16384, pg::DType::kBF16, 4106, 2048, 16384)
    ->UseRealTime();
// Products sharing x, one matmul_many call against one matmul after the other: SigLIP's
// q, k, v; Gemma's q, k, v and gate, up (PaliGemma 3B, 266 tokens).
// (NAME_many and NAME_each: the one call, and one product after the other.)
#define GROUP(NAME, DT, M, K, ...)                                                             \
  BENCHMARK_CAPTURE(BM_matmul_group, NAME##_many, DT, true, M, K, __VA_ARGS__)->UseRealTime(); \
  BENCHMARK_CAPTURE(BM_matmul_group, NAME##_each, DT, false, M, K, __VA_ARGS__)->UseRealTime()
GROUP(vision_qkv_bf16, pg::DType::kBF16, 256, 1152, {1152, 1152, 1152});
GROUP(prefill_qkv_bf16, pg::DType::kBF16, 266, 2048, {2048, 256, 256});
GROUP(prefill_gate_up_bf16, pg::DType::kBF16, 266, 2048, {16384, 16384});
GROUP(vision_qkv_q8, pg::DType::kI8, 256, 1152, {1152, 1152, 1152});
GROUP(prefill_qkv_q8, pg::DType::kI8, 266, 2048, {2048, 256, 256});
#undef GROUP
// Gemma's MLP (PaliGemma 3B, 266 tokens) in one mlp call against its two steps.
BENCHMARK_CAPTURE(BM_mlp, prefill_bf16_fused, pg::DType::kBF16, true, 266, 2048, 16384)
    ->UseRealTime();
BENCHMARK_CAPTURE(BM_mlp, prefill_bf16_steps, pg::DType::kBF16, false, 266, 2048, 16384)
    ->UseRealTime();
// SigLIP in q8 (--dtype int8 and q4): attention projections, fc1, fc2.
BENCHMARK_CAPTURE(BM_matmul, vision_q8_256x1152x1152, pg::DType::kI8, 256, 1152, 1152)
    ->UseRealTime();
BENCHMARK_CAPTURE(BM_matmul, vision_q8_256x4304x1152, pg::DType::kI8, 256, 4304, 1152)
    ->UseRealTime();
BENCHMARK_CAPTURE(BM_matmul, vision_q8_256x1152x4304, pg::DType::kI8, 256, 1152, 4304)
    ->UseRealTime();
// Gemma 2B prefill shapes (266 tokens): q_proj-sized, gate/up, down.
BENCHMARK_CAPTURE(BM_matmul, prefill_bf16_266x2048x2048, pg::DType::kBF16, 266, 2048, 2048)
    ->UseRealTime();
BENCHMARK_CAPTURE(BM_matmul, prefill_bf16_266x256x2048, pg::DType::kBF16, 266, 256, 2048)
    ->UseRealTime();
BENCHMARK_CAPTURE(BM_matmul, prefill_bf16_266x16384x2048, pg::DType::kBF16, 266, 16384, 2048)
    ->UseRealTime();
BENCHMARK_CAPTURE(BM_matmul, prefill_bf16_266x2048x16384, pg::DType::kBF16, 266, 2048, 16384)
    ->UseRealTime();
BENCHMARK_CAPTURE(BM_matmul_cold, vision_bf16_256x1152x1152, pg::DType::kBF16, 256, 1152, 1152)
    ->UseRealTime();
BENCHMARK_CAPTURE(BM_matmul_cold, vision_bf16_256x4304x1152, pg::DType::kBF16, 256, 4304, 1152)
    ->UseRealTime();
BENCHMARK_CAPTURE(BM_matmul_cold, prefill_bf16_266x256x2048, pg::DType::kBF16, 266, 256, 2048)
    ->UseRealTime();
BENCHMARK_CAPTURE(BM_matmul_cold, prefill_bf16_266x2048x2048, pg::DType::kBF16, 266, 2048, 2048)
    ->UseRealTime();
BENCHMARK_CAPTURE(BM_matmul_cold, prefill_bf16_266x16384x2048, pg::DType::kBF16, 266, 16384, 2048)
    ->UseRealTime();
BENCHMARK_CAPTURE(BM_matmul_cold, prefill_q8_266x2048x2048, pg::DType::kI8, 266, 2048, 2048)
    ->UseRealTime();
BENCHMARK_CAPTURE(BM_matmul_onednn_bf16, vision_256x4304x1152, 256, 4304, 1152)->UseRealTime();
BENCHMARK_CAPTURE(BM_matmul_onednn_bf16, vision_256x1152x1152, 256, 1152, 1152)->UseRealTime();
BENCHMARK_CAPTURE(BM_matmul_onednn_bf16, vision_4096x4304x1152, 4096, 4304, 1152)->UseRealTime();
BENCHMARK_CAPTURE(BM_matmul_onednn_bf16, prefill_266x2048x2048, 266, 2048, 2048)->UseRealTime();
BENCHMARK_CAPTURE(BM_matmul_onednn_bf16, prefill_266x256x2048, 266, 256, 2048)->UseRealTime();
BENCHMARK_CAPTURE(BM_matmul_onednn_bf16, prefill_266x16384x2048, 266, 16384, 2048)->UseRealTime();
BENCHMARK_CAPTURE(BM_matmul_onednn_bf16, prefill_266x2048x16384, 266, 2048, 16384)->UseRealTime();
BENCHMARK_CAPTURE(BM_matmul_onednn_bf16, prefill_4106x2048x16384, 4106, 2048, 16384)->UseRealTime();
BENCHMARK_CAPTURE(BM_matmul, prefill_q8_266x256x2048, pg::DType::kI8, 266, 256, 2048)
    ->UseRealTime();
BENCHMARK_CAPTURE(BM_matmul, prefill_q8_266x2048x2048, pg::DType::kI8, 266, 2048, 2048)
    ->UseRealTime();
BENCHMARK_CAPTURE(BM_matmul, prefill_q8_266x16384x2048, pg::DType::kI8, 266, 16384, 2048)
    ->UseRealTime();
BENCHMARK_CAPTURE(BM_matmul, prefill_q8_266x2048x16384, pg::DType::kI8, 266, 2048, 16384)
    ->UseRealTime();
BENCHMARK_CAPTURE(BM_matmul, prefill_q4_266x2048x2048, pg::DType::kU8, 266, 2048, 2048)
    ->UseRealTime();
BENCHMARK_CAPTURE(BM_matmul, prefill_q4_266x16384x2048, pg::DType::kU8, 266, 16384, 2048)
    ->UseRealTime();
// Attention: SigLIP (256 x 256, 16 heads of 72) and a Gemma decode step over 300 keys.
BENCHMARK_CAPTURE(BM_attention, siglip_256x256, 256, 256, 16, 16, 72)->UseRealTime();
BENCHMARK_CAPTURE(BM_attention, gemma_prefill_267x267, 267, 267, 8, 1, 256)->UseRealTime();
BENCHMARK_CAPTURE(BM_attention, siglip_896_4096x4096, 4096, 4096, 16, 16, 72)->UseRealTime();
BENCHMARK_CAPTURE(BM_attention, siglip_256x256_bf16, 256, 256, 16, 16, 72, true)->UseRealTime();
BENCHMARK_CAPTURE(BM_attention, gemma_prefill_267x267_bf16, 267, 267, 8, 1, 256, true)
    ->UseRealTime();
// PaliGemma 3B at 896 px: the prefix of 4107 positions attends to itself whole.
BENCHMARK_CAPTURE(BM_attention, gemma_prefill_4107x4107_bf16, 4107, 4107, 8, 1, 256, true)
    ->UseRealTime();
// Gemma 2 (PaliGemma 2 3B): 8 heads on 4 kv heads, logits soft-capped at 50.
BENCHMARK_CAPTURE(BM_attention, gemma2_prefill_267x267_bf16, 267, 267, 8, 4, 256, true, 50.0f)
    ->UseRealTime();
BENCHMARK_CAPTURE(BM_attention, siglip_896_4096x4096_bf16, 4096, 4096, 16, 16, 72, true)
    ->UseRealTime();
BENCHMARK_CAPTURE(BM_attention, gemma_decode_1x300, 1, 300, 8, 1, 256)->UseRealTime();
// Decode at 896 px: 4096 image tokens + prompt in the cache.
BENCHMARK_CAPTURE(BM_attention, gemma_decode_1x4107, 1, 4107, 8, 1, 256)->UseRealTime();
BENCHMARK_CAPTURE(BM_attention, gemma2_decode_1x4107, 1, 4107, 8, 4, 256)->UseRealTime();
// PaliGemma 2 3B at 224 px: 4 kv heads, soft-capped, ~300 keys in the cache.
BENCHMARK_CAPTURE(BM_attention, gemma2_decode_1x300, 1, 300, 8, 4, 256, false, 50.0f)
    ->UseRealTime();

// A decode step's attention over all layers: PaliGemma 2 3B (26 layers, 4 kv heads,
// soft-capped) and PaliGemma 3B (18 layers, 1 kv head), ~300 keys (224 px).
BENCHMARK_CAPTURE(BM_attention_layers, gemma2_26x300, 26, 300, 8, 4, 256, 50.0f)->UseRealTime();
BENCHMARK_CAPTURE(BM_attention_layers, gemma_18x300, 18, 300, 8, 1, 256, 0.0f)->UseRealTime();
// The same from bf16 caches (the low-precision modes), and both at 896 px (4107 keys).
BENCHMARK_CAPTURE(BM_attention_layers, gemma2_26x300_bf16, 26, 300, 8, 4, 256, 50.0f, true)
    ->UseRealTime();
BENCHMARK_CAPTURE(BM_attention_layers, gemma_18x300_bf16, 18, 300, 8, 1, 256, 0.0f, true)
    ->UseRealTime();
BENCHMARK_CAPTURE(BM_attention_layers, gemma_18x4107, 18, 4107, 8, 1, 256, 0.0f)->UseRealTime();
BENCHMARK_CAPTURE(BM_attention_layers, gemma_18x4107_bf16, 18, 4107, 8, 1, 256, 0.0f, true)
    ->UseRealTime();
BENCHMARK_CAPTURE(BM_attention_layers, gemma2_26x4107, 26, 4107, 8, 4, 256, 50.0f)->UseRealTime();
BENCHMARK_CAPTURE(BM_attention_layers, gemma2_26x4107_bf16, 26, 4107, 8, 4, 256, 50.0f, true)
    ->UseRealTime();
BENCHMARK_CAPTURE(BM_argmax, reference_257152, false)->UseRealTime();
BENCHMARK_CAPTURE(BM_argmax, fast_257152, true)->UseRealTime();

}  // namespace

int main(int argc, char** argv) {
  pg::set_num_threads(0);
  benchmark::Initialize(&argc, argv);
  benchmark::RunSpecifiedBenchmarks();
  benchmark::Shutdown();
  return 0;
}
