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
#include "kernels/roofline.h"
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
  // Timed passes after the warm-up (each with a cache of its own; the last one's feeds the
  // decode): vision_s, prefill_s and ttft_s are their medians, every pass is kept.
  int64_t repeat = 1;
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
  // Every timed pass, in order (repeat of them).
  std::vector<double> vision_runs_s, ttft_runs_s;
  double peak_rss_mb = 0, weights_mb = 0, kv_cache_mb = 0;
  double vision_gflop = 0, prefill_gflop = 0, decode_bytes_per_token = 0;
  // Machine peaks and the limits they imply for this run.
  double peak_f32_gflops = 0, peak_bf16_gflops = 0, peak_int8_gops = 0, bandwidth_gbs = 0;
  // AMX tile products' peaks (0 where AMX does not run); the rooflines use them where > 0.
  double peak_amx_bf16_gflops = 0, peak_amx_int8_gops = 0;
  // roofline_ttft_s: first_token_roofline's ops_s; roofline_ttft_compute_s its compute_s.
  double roofline_ttft_s = 0, roofline_decode_tok_s = 0, roofline_ttft_compute_s = 0;
  // With profile: time per op over the (last timed) first token and over the decode.
  std::vector<kernels::OpProfile> profile_ttft, profile_decode;
};

Result<BenchReport> run_bench(const BenchOptions& options);

// FLOPs of attention (QK^T and PV) in the image encoder's layers for one image, and in the
// decoder's over a prompt of T tokens (full attention over the prefix; the last layer's
// for the last query alone, all the first token needs: model::HiddenRows::kLast).
double vision_attention_flops(const io::PaliGemmaConfig& c);
double prefill_attention_flops(const io::PaliGemmaConfig& c, double T);

// What the first token needs computed: every weight product (rows of x by the matrix's
// out x in, and the bytes of the matrix as held; the last decoder layer's keys and values
// over every row, its other products over the last row), the attention's FLOPs, and all
// FLOPs together (products, attention and the LM head on the last position).
struct FirstTokenWork {
  struct Product {
    double rows = 0, out = 0, in = 0, bytes = 0;
  };
  std::vector<Product> products;  // vision tower and projector, decoder layers, LM head
  double attention_flops = 0;
  double flops = 0;
};
FirstTokenWork first_token_work(const io::PaliGemmaConfig& c, model::PaliGemmaWeights& w,
                                int64_t prompt_tokens);

// The first token's roofline for weights of `type`:
//   ops_s: op by op, each weight product at the larger of its arithmetic at the mode's
//     product peak (f32, bf16, or int8 for int8 and q4) and its weights' bytes at the
//     memory bandwidth (the LM head's single row is bound by memory), attention at the
//     peak of the arithmetic it runs in (bf16 products in the bf16, int8 and q4 modes;
//     f32 with f32 and as-stored weights);
//   compute_s: every FLOP at the mode's product peak, no memory term (how the roofline
//     was figured before session 23, now over the same work; it leaves out the LM head's
//     memory time and charges bf16 attention at the int8 peak: 2.3% below ops_s for
//     PaliGemma 3B int8 at 224 px).
// A mode whose unit the CPU or build lacks (bf16 or int8 peak 0) is held to the float32
// peak, as its products then run; both 0 where that is 0 too (no probe ran).
struct FirstTokenRoofline {
  double ops_s = 0, compute_s = 0;
};
FirstTokenRoofline first_token_roofline(const FirstTokenWork& work, model::WeightType type,
                                        const kernels::Roofline& peaks);

}  // namespace pg::runtime
