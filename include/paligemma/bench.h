// Benchmarks of the engine at real model sizes (random weights, or a checkpoint), with
// the machine's roofline measured in the same run.
#pragma once

#include <string>
#include <vector>

#include "paligemma/paligemma.h"

namespace paligemma {

struct BenchOptions {
  std::string preset;          // e.g. "paligemma-3b-224", or a config.json path
  std::string model_dir;       // instead of a preset: benchmark a checkpoint's real weights
  std::string dtype = "bf16";  // f32, bf16, int8, q4 (auto: as stored, with model_dir)
  int64_t image_size = 0;      // > 0: override the preset's image size
  int64_t text_tokens = 10;
  int64_t decode_tokens = 64;
  int64_t warmup = 1;    // untimed first-token passes before the timed ones
  int64_t repeat = 1;    // timed first-token passes: vision_s, prefill_s, ttft_s are medians
  bool probe = true;     // measure the roofline
  bool profile = false;  // time every kernel call
};

struct BenchResult {
  std::string preset, dtype;
  int threads = 0;
  int64_t image_tokens = 0, prompt_tokens = 0, decode_tokens = 0;
  double load_s = 0, vision_s = 0, prefill_s = 0, ttft_s = 0, decode_tok_s = 0;
  double cold_vision_s = 0, cold_ttft_s = 0;       // the first pass after load
  std::vector<double> vision_runs_s, ttft_runs_s;  // every timed pass, in order
  double peak_rss_mb = 0, weights_mb = 0, kv_cache_mb = 0;
  double vision_gflop = 0, prefill_gflop = 0, decode_bytes_per_token = 0;
  double peak_f32_gflops = 0, peak_bf16_gflops = 0, peak_int8_gops = 0, bandwidth_gbs = 0;
  // AMX tile products' peaks, 0 where AMX does not run (the CPU lacks it, or PG_AMX=0):
  // where > 0 they, not the AVX-512 peaks above, bound the bf16 and int8 rooflines.
  double peak_amx_bf16_gflops = 0, peak_amx_int8_gops = 0;
  // roofline_ttft_s: op by op, each weight product at the larger of its arithmetic at the
  // mode's peak and its weights' bytes at the memory bandwidth, attention at the peak of
  // the arithmetic it runs in; roofline_ttft_compute_s: every FLOP at the mode's product
  // peak, no memory term (the earlier definition, kept for comparison).
  double roofline_ttft_s = 0, roofline_decode_tok_s = 0, roofline_ttft_compute_s = 0;
  struct Op {
    std::string op;
    long long calls = 0;
    double seconds = 0;
  };
  // With profile: wall time per kernel op over the first token and over the decode.
  std::vector<Op> profile_ttft, profile_decode;
};

Result<BenchResult> run_bench(const BenchOptions& options);
// What makes a result's fractions of the roofline unreliable, one sentence each (empty when
// nothing does): a figure beyond its roofline (no run can beat the machine's limit, so the
// probes ran while something else was using the machine), and a timed first token over 1.25
// times its cold pass (a warm pass is the faster one: something slowed it down).
std::vector<std::string> roofline_warnings(const BenchResult& r);
// Names of the presets built into the binary.
std::vector<std::string> bench_presets();

}  // namespace paligemma
