// build/paligemma run-batch: many {image, prompt} records through one loaded model.
//
// Input: JSONL, one record per non-blank line: {"image": "a.jpg", "prompt": "caption en"}
// or {"images": ["a.jpg", "b.jpg"], ...}; optional "max_tokens" and "id" (echoed). Paths are
// relative to the JSONL file's folder. Output: one JSON line per record, in order, flushed as
// written: {"index", "line", "id"?, "text", "ids", "prompt_tokens", "stop_reason",
// "objects"? (prompts "detect ..." / "segment ...")} or {"index", "line", "id"?, "error"}.
#include <unistd.h>

#include <chrono>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <memory>
#include <string>
#include <vector>

#include "command.h"
#include "paligemma/tasks.h"
#include "task_json.h"

namespace cli {
namespace {

using nlohmann::json;

struct BatchFlags {
  ModelFlags model;
  std::string input;
  std::string output;
  int64_t max_tokens = 64;
  std::string vae;
  bool progress = false;
};

struct Record {
  size_t line = 0;  // 1-based line in the input
  std::string text;
};

std::string format_duration(double s) {
  if (!(s >= 0) || s > 359999) return "--:--";
  const long t = static_cast<long>(s + 0.5);
  char buf[32];
  if (t >= 3600) {
    std::snprintf(buf, sizeof(buf), "%ld:%02ld:%02ld", t / 3600, t / 60 % 60, t % 60);
  } else {
    std::snprintf(buf, sizeof(buf), "%02ld:%02ld", t / 60, t % 60);
  }
  return buf;
}

// "\r[#####.....] 12/40 records  0.85 records/s  ETA 00:33  1 error" on stderr.
void draw_progress(size_t done, size_t total, size_t errors, double elapsed) {
  constexpr int kWidth = 24;
  const int filled = total > 0 ? static_cast<int>(kWidth * done / total) : kWidth;
  std::string bar(static_cast<size_t>(filled), '#');
  bar.append(static_cast<size_t>(kWidth - filled), '.');
  const double rate = elapsed > 0 ? done / elapsed : 0.0;
  const double eta = rate > 0 ? (total - done) / rate : -1;
  std::fprintf(stderr, "\r[%s] %zu/%zu records  %.2f records/s  ETA %s  %zu error%s ", bar.c_str(),
               done, total, rate, format_duration(eta).c_str(), errors, errors == 1 ? "" : "s");
  std::fflush(stderr);
}

// The result line of one record (never throws: every failure becomes "error").
json run_record(const paligemma::Model& model, const paligemma::Vae* vae, const Record& rec,
                size_t index, const std::filesystem::path& base, int64_t max_tokens) {
  json out;
  out["index"] = index;
  out["line"] = rec.line;
  auto error = [&out](const std::string& why) {
    out["error"] = why;
    return out;
  };
  const json j = json::parse(rec.text, nullptr, /*allow_exceptions=*/false);
  if (j.is_discarded()) return error("line " + std::to_string(rec.line) + " is not valid JSON");
  if (!j.is_object()) return error("line " + std::to_string(rec.line) + " is not a JSON object");
  if (j.contains("id")) out["id"] = j["id"];

  std::vector<std::string> paths;
  if (j.contains("image") && j.contains("images"))
    return error("give either \"image\" or \"images\", not both");
  if (j.contains("image")) {
    if (!j["image"].is_string()) return error("\"image\" must be a string (a file path)");
    paths.push_back(j["image"].get<std::string>());
  } else if (j.contains("images")) {
    if (!j["images"].is_array() || j["images"].empty())
      return error("\"images\" must be a non-empty array of paths");
    for (const json& p : j["images"]) {
      if (!p.is_string()) return error("\"images\" must hold only strings (file paths)");
      paths.push_back(p.get<std::string>());
    }
  } else {
    return error("the record has no \"image\" (or \"images\")");
  }
  if (!j.contains("prompt") || !j["prompt"].is_string())
    return error("the record has no \"prompt\" string");
  const std::string prompt = j["prompt"].get<std::string>();

  paligemma::GenerateOptions o;
  o.max_tokens = max_tokens;
  if (j.contains("max_tokens")) {
    const json& m = j["max_tokens"];
    if (!m.is_number_integer() || m.get<int64_t>() < 1 || m.get<int64_t>() > 1'000'000) {
      return error("\"max_tokens\" must be an integer from 1 to 1000000");
    }
    o.max_tokens = m.get<int64_t>();
  }
  std::vector<paligemma::RgbImage> images;
  for (const std::string& p : paths) {
    std::filesystem::path path(p);
    if (path.is_relative()) path = base / path;
    auto img = paligemma::load_image(path.string());
    if (!img.ok()) return error(img.status().message());
    images.push_back(std::move(*img));
  }
  auto g = paligemma::generate_from_images(model, images, prompt, o);
  if (!g.ok()) return error(g.status().message());
  out["text"] = g->text;
  out["ids"] = g->ids;
  out["prompt_tokens"] = g->prompt_tokens;
  out["stop_reason"] = g->stop_reason;
  const bool detect = prompt.rfind("detect ", 0) == 0, segment = prompt.rfind("segment ", 0) == 0;
  if (detect || segment) {
    auto objects = paligemma::parse_objects(
        g->text, segment ? paligemma::ObjectTask::kSegment : paligemma::ObjectTask::kDetect,
        images[0].width, images[0].height, vae);
    if (objects.ok()) out["objects"] = objects_json(*objects, MaskFormat::kRle);
  }
  return out;
}

int run_batch(const BatchFlags& f) {
  std::ifstream in(f.input, std::ios::binary);
  if (!in) return fail(f.input + ": cannot open the batch input");
  std::vector<Record> records;
  std::string line;
  for (size_t n = 1; std::getline(in, line); ++n) {
    if (line.find_first_not_of(" \t\r\n") == std::string::npos) continue;
    records.push_back({n, line});
  }
  if (in.bad()) return fail(f.input + ": read error");
  std::error_code ec;
  if (std::filesystem::exists(f.output, ec) && std::filesystem::equivalent(f.input, f.output, ec)) {
    return fail("--output " + f.output + " is the input file");
  }
  std::unique_ptr<paligemma::Vae> vae;
  if (!f.vae.empty()) {
    auto v = paligemma::Vae::load(f.vae);
    if (!v.ok()) return fail(v.status().message());
    vae = std::make_unique<paligemma::Vae>(std::move(*v));
  }
  double load_s = 0;
  auto model = load_model(f.model, &load_s);
  if (!model.ok()) return fail(model.status().message());

  std::unique_ptr<FILE, int (*)(FILE*)> out(std::fopen(f.output.c_str(), "wb"), std::fclose);
  if (!out) return fail(f.output + ": cannot open for writing");
  const std::filesystem::path base = std::filesystem::absolute(f.input).parent_path();
  const bool show = f.progress || isatty(fileno(stderr)) == 1;
  const auto t0 = std::chrono::steady_clock::now();
  auto elapsed = [&t0] {
    return std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  };
  size_t errors = 0;
  if (show) draw_progress(0, records.size(), 0, 0.0);
  for (size_t i = 0; i < records.size(); ++i) {
    const json r = run_record(*model, vae.get(), records[i], i, base, f.max_tokens);
    if (r.contains("error")) ++errors;
    const std::string text = dump_json(r) + "\n";
    if (std::fwrite(text.data(), 1, text.size(), out.get()) != text.size() ||
        std::fflush(out.get()) != 0) {
      if (show) std::fprintf(stderr, "\n");
      return fail(f.output + ": write failed after " + std::to_string(i) + " records");
    }
    if (show) draw_progress(i + 1, records.size(), errors, elapsed());
  }
  if (show) std::fprintf(stderr, "\n");
  std::FILE* raw = out.release();
  if (std::fclose(raw) != 0) return fail(f.output + ": write failed");
  std::fprintf(stderr, "run-batch: %zu records, %zu error%s, %.1f s (model load %.2f s) -> %s\n",
               records.size(), errors, errors == 1 ? "" : "s", elapsed(), load_s, f.output.c_str());
  return 0;
}

}  // namespace

void register_batch(CLI::App& app, Runners& runners) {
  auto f = std::make_shared<BatchFlags>();
  CLI::App* cmd = app.add_subcommand(
      "run-batch", "Run many {image, prompt} JSONL records with one loaded model");
  add_model_flags(cmd, f->model);
  cmd->add_option("--input", f->input,
                  "JSONL: {\"image\": path, \"prompt\": text} per line (paths relative to it)")
      ->required();
  cmd->add_option("--output", f->output, "JSONL results, one line per record, in order")
      ->required();
  cmd->add_option("--max-tokens", f->max_tokens,
                  "Most tokens per record (default 64; a record's max_tokens wins)")
      ->check(CLI::PositiveNumber);
  cmd->add_option("--vae", f->vae, "vae-oid.npz: masks for \"segment ...\" records");
  cmd->add_flag("--progress", f->progress,
                "Draw the progress bar even when stderr is not a terminal");
  runners["run-batch"] = [f] { return run_batch(*f); };
}

}  // namespace cli
