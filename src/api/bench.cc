#include "paligemma/bench.h"

#include <cmath>
#include <cstdio>
#include <string>
#include <vector>

#include "runtime/bench.h"

namespace paligemma {

Result<BenchResult> run_bench(const BenchOptions& options) {
  pg::runtime::BenchOptions o;
  o.preset = options.preset;
  o.model_dir = options.model_dir;
  PG_ASSIGN_OR_RETURN(o.type, pg::model::parse_weight_type(options.dtype));
  if (o.type == pg::model::WeightType::kAsStored && o.model_dir.empty()) {
    return pg::invalid_argument(
        "--dtype auto needs --model (random weights have no stored format)");
  }
  if (options.decode_tokens < 0 || options.text_tokens < 0) {
    return pg::invalid_argument("token counts must be >= 0");
  }
  o.warmup = options.warmup;  // (the pass counts are checked by pg::runtime::run_bench)
  o.repeat = options.repeat;
  o.image_size = options.image_size;
  o.text_tokens = options.text_tokens;
  o.decode_tokens = options.decode_tokens;
  o.probe = options.probe;
  o.profile = options.profile;
  PG_ASSIGN_OR_RETURN(pg::runtime::BenchReport r, pg::runtime::run_bench(o));
  BenchResult b;
  b.preset = r.preset;
  b.dtype = r.dtype;
  b.threads = r.threads;
  b.image_tokens = r.image_tokens;
  b.prompt_tokens = r.prompt_tokens;
  b.decode_tokens = r.decode_tokens;
  b.load_s = r.load_s;
  b.vision_s = r.vision_s;
  b.prefill_s = r.prefill_s;
  b.ttft_s = r.ttft_s;
  b.cold_vision_s = r.cold_vision_s;
  b.cold_ttft_s = r.cold_ttft_s;
  b.vision_runs_s = r.vision_runs_s;
  b.ttft_runs_s = r.ttft_runs_s;
  b.decode_tok_s = r.decode_tok_s;
  b.peak_rss_mb = r.peak_rss_mb;
  b.weights_mb = r.weights_mb;
  b.kv_cache_mb = r.kv_cache_mb;
  b.vision_gflop = r.vision_gflop;
  b.prefill_gflop = r.prefill_gflop;
  b.decode_bytes_per_token = r.decode_bytes_per_token;
  b.peak_f32_gflops = r.peak_f32_gflops;
  b.peak_bf16_gflops = r.peak_bf16_gflops;
  b.peak_int8_gops = r.peak_int8_gops;
  b.peak_amx_bf16_gflops = r.peak_amx_bf16_gflops;
  b.peak_amx_int8_gops = r.peak_amx_int8_gops;
  b.bandwidth_gbs = r.bandwidth_gbs;
  b.roofline_ttft_s = r.roofline_ttft_s;
  b.roofline_ttft_compute_s = r.roofline_ttft_compute_s;
  b.roofline_decode_tok_s = r.roofline_decode_tok_s;
  for (const auto& p : r.profile_ttft) b.profile_ttft.push_back({p.op, p.calls, p.seconds});
  for (const auto& p : r.profile_decode) b.profile_decode.push_back({p.op, p.calls, p.seconds});
  return b;
}

std::vector<std::string> roofline_warnings(const BenchResult& r) {
  std::vector<std::string> out;
  auto percent = [](double f) { return std::to_string(std::lround(f * 100)) + "%"; };
  const std::string busy =
      "the machine was busier during the roofline probes than during the run, so the "
      "fractions of this run are not to be trusted; rerun on an idle machine";
  if (r.roofline_ttft_s > 0 && r.ttft_s > 0 && r.roofline_ttft_s > r.ttft_s) {
    out.push_back("the first token ran at " + percent(r.roofline_ttft_s / r.ttft_s) +
                  " of its roofline: " + busy);
  }
  if (r.roofline_decode_tok_s > 0 && r.decode_tok_s > r.roofline_decode_tok_s) {
    out.push_back("decode ran at " + percent(r.decode_tok_s / r.roofline_decode_tok_s) +
                  " of its roofline: either the weights fit in the CPU's caches (the roofline "
                  "assumes they stream from memory) or " +
                  busy);
  }
  // (A warm pass is faster than the cold one, which also faults its buffers in.)
  if (r.cold_ttft_s > 0 && r.ttft_s > 1.25 * r.cold_ttft_s) {
    char times[64];
    std::snprintf(times, sizeof(times), "%.2f s against %.2f s", r.ttft_s, r.cold_ttft_s);
    out.push_back("the timed first token took over 1.25 times the cold pass (" +
                  std::string(times) +
                  "): something else slowed the timed pass; rerun on an idle machine");
  }
  return out;
}

std::vector<std::string> bench_presets() {
  std::vector<std::string> names;
  for (const auto& p : pg::runtime::builtin_presets()) names.push_back(p.first);
  return names;
}

}  // namespace paligemma
