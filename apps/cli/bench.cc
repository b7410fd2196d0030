// build/paligemma bench | quantize
#include "paligemma/bench.h"

#include <algorithm>
#include <cstdio>
#include <memory>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "command.h"

namespace cli {
namespace {

using nlohmann::json;

struct BenchFlags {
  paligemma::BenchOptions options;
  bool random_weights = false;
  bool no_probe = false;
  int threads = 0;
  bool json = false;
};

std::string fraction(double measured, double limit, bool higher_is_better) {
  if (limit <= 0 || measured <= 0) return "";
  char buf[32];
  std::snprintf(buf, sizeof(buf), " (%.0f%% of roofline)",
                100.0 * (higher_is_better ? measured / limit : limit / measured));
  return buf;
}

int run_bench(BenchFlags& f) {
  if (f.options.model_dir.empty() && f.options.preset.empty())
    return fail("give --preset NAME or --model DIR");
  if (!f.options.preset.empty() && !f.random_weights) {
    return fail("--preset benchmarks random weights of the preset's size: add --random-weights");
  }
  f.options.probe = !f.no_probe;
  paligemma::set_threads(f.threads);
  auto r = paligemma::run_bench(f.options);
  if (!r.ok()) return fail(r.status().message());
  // Warnings go to stderr (and into the JSON), so that a table built from many runs can
  // drop or rerun the disturbed ones.
  const std::vector<std::string> warnings = paligemma::roofline_warnings(*r);
  for (const auto& w : warnings) std::fprintf(stderr, "paligemma bench: warning: %s\n", w.c_str());
  const double ttft_frac = r->roofline_ttft_s > 0 ? r->roofline_ttft_s / r->ttft_s : 0;
  const double ttft_compute_frac =
      r->roofline_ttft_compute_s > 0 ? r->roofline_ttft_compute_s / r->ttft_s : 0;
  const double dec_frac =
      r->roofline_decode_tok_s > 0 ? r->decode_tok_s / r->roofline_decode_tok_s : 0;
  if (f.json) {
    json j = {{"preset", r->preset},
              {"dtype", r->dtype},
              {"threads", r->threads},
              {"image_tokens", r->image_tokens},
              {"prompt_tokens", r->prompt_tokens},
              {"decode_tokens", r->decode_tokens},
              {"load_s", r->load_s},
              {"vision_s", r->vision_s},
              {"prefill_s", r->prefill_s},
              {"ttft_s", r->ttft_s},
              {"warmup", f.options.warmup},
              {"repeat", f.options.repeat},
              {"vision_runs_s", r->vision_runs_s},
              {"ttft_runs_s", r->ttft_runs_s},
              {"cold_vision_s", r->cold_vision_s},
              {"cold_ttft_s", r->cold_ttft_s},
              {"decode_tok_s", r->decode_tok_s},
              {"peak_rss_mb", r->peak_rss_mb},
              {"weights_mb", r->weights_mb},
              {"kv_cache_mb", r->kv_cache_mb},
              {"vision_gflop", r->vision_gflop},
              {"prefill_gflop", r->prefill_gflop},
              {"decode_bytes_per_token", r->decode_bytes_per_token},
              {"roofline",
               {{"ttft_s", r->roofline_ttft_s},
                {"decode_tok_s", r->roofline_decode_tok_s},
                {"ttft_compute_s", r->roofline_ttft_compute_s},
                {"peak_f32_gflops", r->peak_f32_gflops},
                {"peak_bf16_gflops", r->peak_bf16_gflops},
                {"peak_int8_gops", r->peak_int8_gops},
                {"peak_amx_bf16_gflops", r->peak_amx_bf16_gflops},
                {"peak_amx_int8_gops", r->peak_amx_int8_gops},
                {"bandwidth_gbs", r->bandwidth_gbs}}},
              {"fraction_of_roofline",
               {{"ttft", ttft_frac}, {"decode", dec_frac}, {"ttft_compute", ttft_compute_frac}}},
              {"warnings", warnings}};
    if (f.options.profile) {
      auto ops = [](const std::vector<paligemma::BenchResult::Op>& v) {
        json a = json::array();
        for (const auto& o : v)
          a.push_back({{"op", o.op}, {"calls", o.calls}, {"seconds", o.seconds}});
        return a;
      };
      j["profile"] = {{"ttft", ops(r->profile_ttft)}, {"decode", ops(r->profile_decode)}};
    }
    std::printf("%s\n", j.dump(2).c_str());
    return 0;
  }
  std::printf("%s, %s weights, %d threads\n", r->preset.c_str(), r->dtype.c_str(), r->threads);
  std::printf("  load            %8.2f s   (weights %.0f MiB, KV cache %.0f MiB)\n", r->load_s,
              r->weights_mb, r->kv_cache_mb);
  std::printf("  vision          %8.3f s   (%.0f GFLOP)\n", r->vision_s, r->vision_gflop);
  std::printf("  first token     %8.3f s   (%lld prompt tokens, %.0f GFLOP; roofline %.3f s)%s\n",
              r->ttft_s, static_cast<long long>(r->prompt_tokens),
              r->vision_gflop + r->prefill_gflop, r->roofline_ttft_s,
              fraction(r->ttft_s, r->roofline_ttft_s, false).c_str());
  if (r->ttft_runs_s.size() > 1) {
    const auto [lo, hi] = std::minmax_element(r->ttft_runs_s.begin(), r->ttft_runs_s.end());
    std::printf("                  median of %zu timed passes (%.3f to %.3f s)\n",
                r->ttft_runs_s.size(), *lo, *hi);
  }
  if (r->roofline_ttft_compute_s > 0) {
    std::printf("                  every FLOP at the products' peak, no memory: %.3f s%s\n",
                r->roofline_ttft_compute_s,
                fraction(r->ttft_s, r->roofline_ttft_compute_s, false).c_str());
  }
  if (f.options.warmup > 0) {
    std::printf(
        "  cold start      %8.3f s   (the first pass after load, vision %.3f s; %lld "
        "warm-up pass%s before the timed one%s)\n",
        r->cold_ttft_s, r->cold_vision_s, static_cast<long long>(f.options.warmup),
        f.options.warmup == 1 ? "" : "es", f.options.repeat == 1 ? "" : "s");
  }
  std::printf("  decode          %8.2f tok/s (%lld tokens, %.0f MB/token; roofline %.2f tok/s)%s\n",
              r->decode_tok_s, static_cast<long long>(r->decode_tokens),
              r->decode_bytes_per_token / 1e6, r->roofline_decode_tok_s,
              fraction(r->decode_tok_s, r->roofline_decode_tok_s, true).c_str());
  std::printf("  peak RSS        %8.0f MiB\n", r->peak_rss_mb);
  if (f.options.probe) {
    std::printf(
        "  machine         f32 %.0f GFLOP/s, bf16 %.0f GFLOP/s, int8 %.0f GOP/s, memory %.1f "
        "GB/s\n",
        r->peak_f32_gflops, r->peak_bf16_gflops, r->peak_int8_gops, r->bandwidth_gbs);
    if (r->peak_amx_bf16_gflops > 0) {
      std::printf("  AMX tiles       bf16 %.0f GFLOP/s, int8 %.0f GOP/s (the rooflines' peaks)\n",
                  r->peak_amx_bf16_gflops, r->peak_amx_int8_gops);
    }
  }
  if (f.options.profile) {
    auto table = [](const char* title, const std::vector<paligemma::BenchResult::Op>& v) {
      double total = 0;
      for (const auto& o : v) total += o.seconds;
      std::printf("  %s\n", title);
      for (const auto& o : v) {
        std::printf("    %-22s %7lld calls %9.3f s %6.1f%%\n", o.op.c_str(), o.calls, o.seconds,
                    total > 0 ? 100 * o.seconds / total : 0.0);
      }
    };
    table("profile, first token:", r->profile_ttft);
    table("profile, decode:", r->profile_decode);
  }
  return 0;
}

}  // namespace

void register_bench(CLI::App& app, Runners& runners) {
  auto f = std::make_shared<BenchFlags>();
  std::string presets;
  for (const std::string& p : paligemma::bench_presets())
    presets += (presets.empty() ? "" : ", ") + p;
  CLI::App* cmd = app.add_subcommand(
      "bench",
      "Time vision, first token and decode at real sizes, against this machine's roofline");
  cmd->add_option("--preset", f->options.preset,
                  "Model size: " + presets + "; or a config.json path");
  cmd->add_flag("--random-weights", f->random_weights,
                "Random weights of the preset's real size (no download)");
  cmd->add_option("--model", f->options.model_dir,
                  "Benchmark a checkpoint folder instead of a preset");
  cmd->add_option("--dtype", f->options.dtype,
                  "Weights while running: f32, bf16 (default), int8, q4, w8a8, auto")
      ->check(CLI::IsMember({"f32", "bf16", "int8", "q4", "w8a8", "auto"}));
  cmd->add_option("--threads", f->threads, "Threads (default: all cores)")
      ->check(CLI::NonNegativeNumber);
  cmd->add_option("--image-size", f->options.image_size,
                  "Override the image size (a multiple of 14)")
      ->check(CLI::PositiveNumber);
  cmd->add_option("--text-tokens", f->options.text_tokens,
                  "Prompt text tokens after the image (default 10)")
      ->check(CLI::NonNegativeNumber);
  cmd->add_option("--decode-tokens", f->options.decode_tokens, "Tokens to decode (default 64)")
      ->check(CLI::NonNegativeNumber);
  cmd->add_option("--warmup", f->options.warmup,
                  "Untimed vision + first-token passes before the timed one (default 1; the "
                  "first pass is reported as the cold start)")
      ->check(CLI::NonNegativeNumber);
  cmd->add_option("--repeat", f->options.repeat,
                  "Timed vision + first-token passes after the warm-up (default 1); vision, "
                  "prefill and first token are their medians, every pass is in the JSON")
      ->check(CLI::PositiveNumber);
  cmd->add_flag("--no-probe", f->no_probe, "Skip the roofline probes");
  cmd->add_flag("--profile", f->options.profile,
                "Time every kernel op (adds a per-op table / \"profile\" key)");
  cmd->add_flag("--json", f->json, "Print one JSON object");
  runners["bench"] = [f] { return run_bench(*f); };

  struct QuantizeFlags {
    std::string model, dtype, out;
    int threads = 0;
  };
  auto q = std::make_shared<QuantizeFlags>();
  CLI::App* quant = app.add_subcommand(
      "quantize",
      "Write a copy of a checkpoint with int8 or 4-bit weights that loads without re-quantising");
  quant->add_option("--model", q->model, "Checkpoint folder")->required();
  quant
      ->add_option("--dtype", q->dtype,
                   "int8 (q8 blocks of 32), q4 (4-bit blocks of 32) or w8a8 (int8, one scale "
                   "per output channel); also bf16, f32")
      ->required()
      ->check(CLI::IsMember({"int8", "q4", "w8a8", "bf16", "f32"}));
  quant->add_option("--out", q->out, "Output folder")->required();
  quant->add_option("--threads", q->threads, "Threads (default: all cores)")
      ->check(CLI::NonNegativeNumber);
  runners["quantize"] = [q] {
    paligemma::set_threads(q->threads);
    const paligemma::Status st = paligemma::quantize(q->model, q->dtype, q->out);
    if (!st.ok()) return fail(st.message());
    std::fprintf(stderr, "paligemma: wrote %s (%s weights)\n", q->out.c_str(), q->dtype.c_str());
    return 0;
  };
}

}  // namespace cli
