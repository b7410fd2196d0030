// The benchmark behind `paligemma bench`: a preset's real sizes with random weights (or a
// checkpoint), timed through vision, prefill, first token and decode, next to the
// machine's roofline measured in the same run.
#pragma once

#include <string>
#include <utility>
#include <vector>

#include "base/status.h"
#include "io/config.h"
#include "kernels/profile.h"
#include "model/weights.h"

namespace pg::runtime {

// name -> config.json text, built into the binary from bench/presets/.
const std::vector<std::pair<std::string, std::string>>& builtin_presets();

struct BenchOptions {
  std::string preset;     // a builtin preset name, or a path to a config.json
  std::string model_dir;  // instead of a preset: a checkpoint folder (its real weights)
  model::WeightType type = model::WeightType::kBF16;
  int64_t image_size = 0;    // > 0: override vision_config.image_size
  int64_t text_tokens = 10;  // prompt text after the image tokens and BOS
  int64_t decode_tokens = 64;
  // Untimed passes of vision + prefill + first token before the timed one, so that the
  // figures are a running engine's (buffers and huge pages already in place); the first
  // pass's time is reported as cold_ttft_s.
  int64_t warmup = 1;
  bool probe = true;     // measure the roofline
  bool profile = false;  // time every kernel call (kernels/profile.h)
  uint64_t seed = 1;
};

struct BenchReport {
  std::string preset, dtype;
  int threads = 0;
  int64_t image_tokens = 0, prompt_tokens = 0, decode_tokens = 0;
  double load_s = 0, vision_s = 0, prefill_s = 0, ttft_s = 0, decode_tok_s = 0;
  // The first vision + first token after load (= the timed one when warmup is 0).
  double cold_vision_s = 0, cold_ttft_s = 0;
  double peak_rss_mb = 0, weights_mb = 0, kv_cache_mb = 0;
  double vision_gflop = 0, prefill_gflop = 0, decode_bytes_per_token = 0;
  // Machine peaks and the limits they imply for this run.
  double peak_f32_gflops = 0, peak_bf16_gflops = 0, peak_int8_gops = 0, bandwidth_gbs = 0;
  double roofline_ttft_s = 0, roofline_decode_tok_s = 0;
  // With profile: time per op over the first token and over the decode.
  std::vector<kernels::OpProfile> profile_ttft, profile_decode;
};

Result<BenchReport> run_bench(const BenchOptions& options);

}  // namespace pg::runtime
