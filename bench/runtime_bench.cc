// Microbenchmarks of the runtime's per-token work outside the model: choosing the next
// token from Gemma's 257152 logits, greedy and sampled (temperature, top-k, top-p).
// Run: build/bench/runtime_bench [--benchmark_format=json]
#include <benchmark/benchmark.h>

#include <random>
#include <vector>

#include "runtime/sampler.h"

namespace {

constexpr int64_t kVocab = 257152;

void BM_sample(benchmark::State& state, bool greedy, int top_k, float top_p) {
  std::vector<float> logits(kVocab);
  std::mt19937 rng(3);
  std::normal_distribution<float> dist(0.0f, 3.0f);
  for (float& x : logits) x = dist(rng);
  pg::runtime::SamplingOptions o;
  o.greedy = greedy;
  o.top_k = top_k;
  o.top_p = top_p;
  o.seed = 5;
  pg::runtime::Sampler sampler(o, kVocab);
  for (auto _ : state) benchmark::DoNotOptimize(sampler.sample(logits.data()));
}

}  // namespace

BENCHMARK_CAPTURE(BM_sample, greedy, true, 0, 1.0f)->UseRealTime()->Unit(benchmark::kMicrosecond);
BENCHMARK_CAPTURE(BM_sample, temperature, false, 0, 1.0f)
    ->UseRealTime()
    ->Unit(benchmark::kMicrosecond);
BENCHMARK_CAPTURE(BM_sample, top_k_40, false, 40, 1.0f)
    ->UseRealTime()
    ->Unit(benchmark::kMicrosecond);
BENCHMARK_CAPTURE(BM_sample, top_p_0_9, false, 0, 0.9f)
    ->UseRealTime()
    ->Unit(benchmark::kMicrosecond);
BENCHMARK_CAPTURE(BM_sample, top_k_64_top_p_0_95, false, 64, 0.95f)
    ->UseRealTime()
    ->Unit(benchmark::kMicrosecond);

BENCHMARK_MAIN();
