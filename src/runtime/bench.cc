#include "runtime/bench.h"

#include <sys/resource.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <fstream>
#include <random>

#include "base/parallel.h"
#include "io/mapped_file.h"
#include "kernels/kernels.h"
#include "kernels/profile.h"
#include "kernels/roofline.h"
#include "model/paligemma.h"
#include "runtime/sampler.h"

namespace pg::runtime {
namespace {

using Clock = std::chrono::steady_clock;
double since(Clock::time_point t0) {
  return std::chrono::duration<double>(Clock::now() - t0).count();
}

// The middle value (the mean of the two middle ones for an even count); v not empty.
double median(std::vector<double> v) {
  std::sort(v.begin(), v.end());
  const size_t n = v.size();
  return n % 2 == 1 ? v[n / 2] : 0.5 * (v[n / 2 - 1] + v[n / 2]);
}

double peak_rss_mb() {
  rusage u{};
  getrusage(RUSAGE_SELF, &u);
  return static_cast<double>(u.ru_maxrss) / 1024.0;  // ru_maxrss is in KiB on Linux
}

Result<io::PaliGemmaConfig> preset_config(const std::string& preset) {
  for (const auto& [name, json] : builtin_presets()) {
    if (name == preset) return io::parse_config(json, "preset " + name);
  }
  if (preset.find('/') != std::string::npos || preset.size() > 5) {
    auto text = io::read_file(preset);
    if (text.ok()) return io::parse_config(*text, preset);
  }
  std::string names;
  for (const auto& p : builtin_presets()) names += (names.empty() ? "" : ", ") + p.first;
  return invalid_argument("unknown preset \"" + preset + "\" (presets: " + names +
                          "; or a config.json path)");
}

// Multiply-add FLOPs of the image encoder + projector for one image.
double vision_flops(const io::PaliGemmaConfig& c) {
  const double N = static_cast<double>(c.vision.num_patches()),
               W = static_cast<double>(c.vision.hidden_size);
  const double I = static_cast<double>(c.vision.intermediate_size);
  const double P =
      static_cast<double>(c.vision.patch_size * c.vision.patch_size * c.vision.num_channels);
  double f = 2 * N * P * W;
  f += static_cast<double>(c.vision.num_hidden_layers) * 2 * N * (4 * W * W + 2 * W * I);
  f += 2 * N * W * static_cast<double>(c.text.hidden_size);
  return f + vision_attention_flops(c);
}

// FLOPs of the decoder over T prompt tokens plus the LM head for the last one.
double prefill_flops(const io::PaliGemmaConfig& c, double T) {
  const auto& t = c.text;
  const double H = static_cast<double>(t.hidden_size), D = static_cast<double>(t.head_dim);
  const double q = static_cast<double>(t.num_attention_heads) * D,
               kv = static_cast<double>(t.num_key_value_heads) * D;
  const double F = static_cast<double>(t.intermediate_size);
  // Per layer over R rows: q and o (H x q each), k and v (H x kv each), gate, up, down.
  auto rows_of = [&](double R) { return 2 * R * (2 * H * q + 3 * H * F); };
  const double kv_rows = 2 * T * 2 * H * kv;
  // The last layer's queries, attention outputs and MLP for the last row alone.
  const double L = static_cast<double>(t.num_hidden_layers);
  return (L - 1) * rows_of(T) + rows_of(1) + L * kv_rows +
         2 * H * static_cast<double>(t.vocab_size) + prefill_attention_flops(c, T);
}

}  // namespace

double vision_attention_flops(const io::PaliGemmaConfig& c) {
  const double N = static_cast<double>(c.vision.num_patches()),
               W = static_cast<double>(c.vision.hidden_size);
  return static_cast<double>(c.vision.num_hidden_layers) * 4 * N * N * W;
}

double prefill_attention_flops(const io::PaliGemmaConfig& c, double T) {
  const auto& t = c.text;
  const double q = static_cast<double>(t.num_attention_heads * t.head_dim);
  // Every layer's T queries against T keys but the last layer's, whose last query alone
  // is needed.
  return (static_cast<double>(t.num_hidden_layers) - 1) * 4 * T * T * q + 4 * T * q;
}

FirstTokenWork first_token_work(const io::PaliGemmaConfig& c, model::PaliGemmaWeights& w,
                                int64_t prompt_tokens) {
  const double T = static_cast<double>(prompt_tokens);
  const double N = static_cast<double>(c.vision.num_patches());
  FirstTokenWork work;
  auto add = [&](double rows, const MatrixView& m) {
    work.products.push_back({rows, static_cast<double>(m.rows), static_cast<double>(m.cols),
                             static_cast<double>(m.stream_bytes())});
  };
  const model::GemmaLayerWeights* last = w.text.layers.empty() ? nullptr : &w.text.layers.back();
  model::for_each_matrix(c, w, [&](const std::string& name, MatrixView& m, bool vision) {
    if (&m == &w.text.embed_tokens || &m == &w.text.lm_head) return;  // a lookup; below
    const bool image_rows = vision || name.rfind("multi_modal_projector.", 0) == 0;
    // The last decoder layer: keys and values of every row, the rest for the last row.
    const bool last_row =
        last != nullptr && (&m == &last->q_proj || &m == &last->o_proj || &m == &last->gate_proj ||
                            &m == &last->up_proj || &m == &last->down_proj);
    add(image_rows ? N : last_row ? 1 : T, m);
  });
  add(1, w.text.lm_head);  // the last position's logits only
  work.attention_flops = vision_attention_flops(c) + prefill_attention_flops(c, T);
  work.flops = vision_flops(c) + prefill_flops(c, T);
  return work;
}

FirstTokenRoofline first_token_roofline(const FirstTokenWork& work, model::WeightType type,
                                        const kernels::Roofline& peaks) {
  using model::WeightType;
  const bool float32 = type == WeightType::kF32 || type == WeightType::kAsStored;
  const bool low_bit =
      type == WeightType::kInt8 || type == WeightType::kQ4 || type == WeightType::kW8A8;
  // Products run at the mode's peak (int8, q4, w8a8: every product as int8 x int8, the vision
  // tower's q8 too); attention multiplies activations by activations: in float32 with f32
  // and as-stored weights, with bf16 products otherwise. The bf16 and int8 peaks are the
  // machine's fastest units': AMX tiles where they run (Roofline::bf16_peak, int8_peak).
  // There int8 and q4 keep the int8 tiles' peak (tdpbusd, twice tdpbf16ps's) although
  // their prefill runs as bf16 tiles on dequantized weights: the machine's limit for the
  // work, and the stricter bound.
  // A CPU or build without the mode's unit (no AVX512-BF16 or VNNI) runs its products as
  // float32 arithmetic: they are held to the float32 peak.
  double product_peak = (float32   ? peaks.f32_gflops
                         : low_bit ? peaks.int8_peak()
                                   : peaks.bf16_peak()) *
                        1e9;
  if (product_peak <= 0) product_peak = peaks.f32_gflops * 1e9;
  const double attention_peak =
      (float32 || peaks.bf16_peak() <= 0 ? peaks.f32_gflops : peaks.bf16_peak()) * 1e9;
  const double bandwidth = peaks.bandwidth_gbs * 1e9;
  FirstTokenRoofline r;
  if (product_peak <= 0 || attention_peak <= 0) return r;
  r.compute_s = work.flops / product_peak;
  // Each product: its arithmetic or its weights' bytes (read at least once from memory),
  // whichever takes longer.
  for (const FirstTokenWork::Product& p : work.products) {
    const double arithmetic = 2 * p.rows * p.out * p.in / product_peak;
    const double memory = bandwidth > 0 ? p.bytes / bandwidth : 0.0;
    r.ops_s += std::max(arithmetic, memory);
  }
  r.ops_s += work.attention_flops / attention_peak;
  return r;
}

Result<BenchReport> run_bench(const BenchOptions& o) {
  if (o.repeat < 1) return invalid_argument("--repeat must be >= 1");
  if (o.warmup < 0) return invalid_argument("--warmup must be >= 0");
  BenchReport r;
  r.threads = num_threads();
  // The arithmetic peaks are probed before the run and again after it, and the better of
  // the two kept: on a shared or throttling machine one probe alone can read low, which
  // would flatter every fraction of the roofline.
  kernels::Roofline before_run;
  if (o.probe) before_run = kernels::measure_roofline(0.3, 0);
  r.dtype = model::weight_type_name(o.type);
  // Load: random weights of the preset's sizes, or a real checkpoint.
  const auto t_load = Clock::now();
  std::unique_ptr<model::PaliGemma> m;
  if (!o.model_dir.empty()) {
    r.preset = o.model_dir;
    PG_ASSIGN_OR_RETURN(m, model::PaliGemma::load(o.model_dir, nullptr, o.type));
  } else {
    r.preset = o.preset;
    PG_ASSIGN_OR_RETURN(io::PaliGemmaConfig config, preset_config(o.preset));
    if (o.image_size > 0) {
      if (o.image_size % config.vision.patch_size != 0) {
        return invalid_argument("--image-size " + std::to_string(o.image_size) +
                                " is not a multiple of the patch size " +
                                std::to_string(config.vision.patch_size));
      }
      config.vision.image_size = o.image_size;
    }
    model::PaliGemmaWeights w = model::random_weights(config, o.type, o.seed);
    m = model::PaliGemma::from_weights(config, std::move(w));
  }
  r.load_s = since(t_load);
  const io::PaliGemmaConfig c = m->config();  // a copy: the model is freed before the probes
  const int64_t S = c.vision.image_size, N = c.num_image_tokens();
  r.image_tokens = N;
  int64_t weight_bytes = 0;
  model::PaliGemmaWeights& weights = const_cast<model::PaliGemmaWeights&>(m->weights());
  model::for_each_matrix(c, weights, [&](const std::string&, MatrixView& mv, bool) {
    weight_bytes += mv.total_bytes();
  });
  if (weights.text.lm_head.data != weights.text.embed_tokens.data)
    weight_bytes += weights.text.lm_head.total_bytes();
  r.weights_mb = static_cast<double>(weight_bytes) / (1 << 20);

  // Inputs: a random image and random text ids (no tokenizer needed).
  std::mt19937_64 rng(o.seed);
  Tensor pixels({c.vision.num_channels, S, S});
  std::uniform_real_distribution<float> px(-1.0f, 1.0f);
  for (int64_t i = 0; i < pixels.numel(); ++i) pixels.data()[i] = px(rng);
  std::vector<int> ids(static_cast<size_t>(N), static_cast<int>(c.image_token_index));
  ids.push_back(static_cast<int>(c.bos_token_id));
  const int64_t text_vocab = std::min<int64_t>(c.image_token_index, c.text.vocab_size);
  std::uniform_int_distribution<int64_t> tok(4, std::max<int64_t>(5, text_vocab - 1));
  for (int64_t i = 0; i < o.text_tokens; ++i) ids.push_back(static_cast<int>(tok(rng)));
  const int64_t T = static_cast<int64_t>(ids.size());
  r.prompt_tokens = T;

  // Time to first token: vision, prefill, LM head on the last row, argmax. Warm-up passes
  // run the same inputs through a cache of their own first; the first of all passes is
  // also kept as the cold figure (the first pass after load: buffers, their pages and the
  // kernel library's code are created on first use).
  struct FirstToken {
    double vision_s, prefill_s, ttft_s;
    int id;
  };
  std::vector<Tensor> images;
  images.push_back(std::move(pixels));
  auto first_token = [&](model::KvCache& cache) {
    FirstToken ft{};
    const auto t0 = Clock::now();
    Tensor features = m->image_features(images);
    ft.vision_s = since(t0);
    const auto t1 = Clock::now();
    Tensor hidden = m->forward(ids, &features, cache, T, model::HiddenRows::kLast);
    Tensor logits = m->logits(hidden.data(), 1);
    ft.id = argmax(logits.data(), text_vocab);
    ft.prefill_s = since(t1);
    ft.ttft_s = since(t0);
    return ft;
  };
  for (int64_t i = 0; i < o.warmup; ++i) {
    model::KvCache warm_cache = m->new_cache(T + 1);
    const FirstToken ft = first_token(warm_cache);
    if (i == 0) {
      r.cold_vision_s = ft.vision_s;
      r.cold_ttft_s = ft.ttft_s;
    }
  }
  const kernels::KernelTable* before = &kernels::kernels();
  if (o.profile) {
    kernels::set_active_kernels(&kernels::profiling_kernels(*before));
    kernels::reset_op_profile();
  }
  // The timed passes, each with a cache of its own: the last one's feeds the decode.
  model::KvCache cache;
  std::vector<double> prefill_runs;
  int id = 0;
  for (int64_t i = 0; i < o.repeat; ++i) {
    cache = m->new_cache(T + o.decode_tokens + 1);
    if (o.profile) kernels::reset_op_profile();
    const FirstToken ft = first_token(cache);
    r.vision_runs_s.push_back(ft.vision_s);
    r.ttft_runs_s.push_back(ft.ttft_s);
    prefill_runs.push_back(ft.prefill_s);
    if (i == 0 && o.warmup == 0) {
      r.cold_vision_s = ft.vision_s;
      r.cold_ttft_s = ft.ttft_s;
    }
    id = ft.id;
  }
  r.vision_s = median(r.vision_runs_s);
  r.prefill_s = median(prefill_runs);
  r.ttft_s = median(r.ttft_runs_s);
  r.kv_cache_mb = static_cast<double>(cache.bytes()) / (1 << 20);
  if (o.profile) {
    r.profile_ttft = kernels::op_profile();
    kernels::reset_op_profile();
  }

  // Decode.
  const auto t2 = Clock::now();
  for (int64_t i = 0; i < o.decode_tokens; ++i) {
    Tensor hidden = m->forward({id}, nullptr, cache, T);
    Tensor logits = m->logits(hidden.data(), 1);
    id = argmax(logits.data(), text_vocab);
  }
  const double decode_s = since(t2);
  if (o.profile) {
    r.profile_decode = kernels::op_profile();
    kernels::set_active_kernels(before);
  }
  r.decode_tokens = o.decode_tokens;
  r.decode_tok_s = o.decode_tokens > 0 ? static_cast<double>(o.decode_tokens) / decode_s : 0;
  r.decode_bytes_per_token = static_cast<double>(model::decoder_bytes_per_token(m->weights()));
  r.peak_rss_mb = peak_rss_mb();
  const FirstTokenWork work = first_token_work(c, weights, T);
  // The probes run last, so that their buffer does not count in the peak RSS.
  m.reset();
  kernels::Roofline roof;
  if (o.probe) {
    roof = kernels::measure_roofline(0.3, int64_t{512} << 20);
    roof.f32_gflops = std::max(roof.f32_gflops, before_run.f32_gflops);
    roof.bf16_gflops = std::max(roof.bf16_gflops, before_run.bf16_gflops);
    roof.int8_gops = std::max(roof.int8_gops, before_run.int8_gops);
    roof.amx_bf16_gflops = std::max(roof.amx_bf16_gflops, before_run.amx_bf16_gflops);
    roof.amx_int8_gops = std::max(roof.amx_int8_gops, before_run.amx_int8_gops);
  }

  // Rooflines: arithmetic at the mode's peak, decode at the memory bandwidth.
  r.vision_gflop = vision_flops(c) / 1e9;
  r.prefill_gflop = prefill_flops(c, static_cast<double>(T)) / 1e9;
  r.peak_f32_gflops = roof.f32_gflops;
  r.peak_bf16_gflops = roof.bf16_gflops;
  r.peak_int8_gops = roof.int8_gops;
  r.peak_amx_bf16_gflops = roof.amx_bf16_gflops;
  r.peak_amx_int8_gops = roof.amx_int8_gops;
  r.bandwidth_gbs = roof.bandwidth_gbs;
  if (o.probe) {
    const FirstTokenRoofline ft_roof = first_token_roofline(work, o.type, roof);
    r.roofline_ttft_s = ft_roof.ops_s;
    r.roofline_ttft_compute_s = ft_roof.compute_s;
    if (roof.bandwidth_gbs > 0)
      r.roofline_decode_tok_s = roof.bandwidth_gbs * 1e9 / r.decode_bytes_per_token;
  }
  return r;
}

}  // namespace pg::runtime
