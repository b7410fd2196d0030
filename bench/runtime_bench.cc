// Microbenchmarks of the runtime's per-token work outside the model: choosing the next
// token from Gemma's 257152 logits, greedy and sampled (temperature, top-k, top-p), and
// turning each new id into streamed text (BM_stream_text, the golden tokenizer).
// Run: build/bench/runtime_bench [--benchmark_format=json]
#include <benchmark/benchmark.h>

#include <random>
#include <vector>

#include "runtime/sampler.h"
#include "text/tokenizer.h"

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

// The text deltas of an answer `n` ids long, one push per id (as the CLI and the server
// stream them); the time per id is the figure (it used to grow with n).
void BM_stream_text(benchmark::State& state, int64_t n) {
  auto tok = pg::text::Tokenizer::load(PG_TESTDATA_DIR "/golden/tiny-pg1/tokenizer.model");
  if (!tok.ok()) {
    state.SkipWithError(tok.status().message().c_str());
    return;
  }
  std::string text = "answer en what is in the image? 12 \xC3\xA9 \xE4\xBD\xA0 ok\n";
  std::vector<int> ids = tok->encode(text);
  while (static_cast<int64_t>(ids.size()) < n) {  // doubling: a few encodes in all
    text += text;
    ids = tok->encode(text);
  }
  ids.resize(static_cast<size_t>(n));
  for (auto _ : state) {
    pg::text::StreamingDecoder stream(*tok);
    size_t bytes = 0;
    for (int id : ids) bytes += stream.push(id).size();
    benchmark::DoNotOptimize(bytes);
  }
  state.counters["s_per_id"] = benchmark::Counter(
      static_cast<double>(n),
      benchmark::Counter::kIsIterationInvariantRate | benchmark::Counter::kInvert,
      benchmark::Counter::kIs1000);
}

}  // namespace

BENCHMARK_CAPTURE(BM_stream_text, ids_512, 512)->UseRealTime()->Unit(benchmark::kMillisecond);
BENCHMARK_CAPTURE(BM_stream_text, ids_4096, 4096)->UseRealTime()->Unit(benchmark::kMillisecond);
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
