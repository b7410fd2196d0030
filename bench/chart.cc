#include "bench/chart.h"

#include <cairo.h>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <fstream>
#include <map>
#include <memory>
#include <nlohmann/json.hpp>
#include <sstream>

namespace pg::bench {
namespace {

using json = nlohmann::json;

// The number at obj[a][b] (b empty: obj[a]), or an error naming the field and the line.
Result<double> number_at(const json& obj, const char* a, const char* b, const std::string& where) {
  const std::string field = b[0] != '\0' ? std::string(a) + "." + b : a;
  const json* v = obj.contains(a) ? &obj.at(a) : nullptr;
  if (v != nullptr && b[0] != '\0') v = v->is_object() && v->contains(b) ? &v->at(b) : nullptr;
  if (v == nullptr) return invalid_argument(where + ": missing field \"" + field + "\"");
  if (!v->is_number()) return invalid_argument(where + ": field \"" + field + "\" is not a number");
  return v->get<double>();
}

Result<std::string> string_at(const json& obj, const char* a, const std::string& where) {
  if (!obj.contains(a)) return invalid_argument(where + ": missing field \"" + a + "\"");
  if (!obj.at(a).is_string())
    return invalid_argument(where + ": field \"" + std::string(a) + "\" is not a string");
  return obj.at(a).get<std::string>();
}

// measured / roofline for a rate, roofline / measured for a time (0 without a roofline).
Figure figure(double value, double roofline, bool is_time, double target) {
  Figure f{value, roofline, 0.0, target};
  if (value > 0 && roofline > 0) f.fraction = is_time ? roofline / value : value / roofline;
  return f;
}

std::string percent(double f) {
  char buf[32];
  std::snprintf(buf, sizeof(buf), "%.0f%%", 100.0 * f);
  return buf;
}

struct SurfaceDeleter {
  void operator()(cairo_surface_t* s) const { cairo_surface_destroy(s); }
};
struct ContextDeleter {
  void operator()(cairo_t* c) const { cairo_destroy(c); }
};

void set_rgb(cairo_t* c, uint32_t rgb) {
  cairo_set_source_rgb(c, ((rgb >> 16) & 0xff) / 255.0, ((rgb >> 8) & 0xff) / 255.0,
                       (rgb & 0xff) / 255.0);
}

void text_at(cairo_t* c, double x, double baseline, const std::string& s, double size,
             bool bold = false) {
  cairo_select_font_face(c, "DejaVu Sans", CAIRO_FONT_SLANT_NORMAL,
                         bold ? CAIRO_FONT_WEIGHT_BOLD : CAIRO_FONT_WEIGHT_NORMAL);
  cairo_set_font_size(c, size);
  cairo_move_to(c, x, baseline);
  cairo_show_text(c, s.c_str());
}

double text_width(cairo_t* c, const std::string& s) {
  cairo_text_extents_t te;
  cairo_text_extents(c, s.c_str(), &te);
  return te.x_advance;
}

// Draws the whole chart on c (layout l).
void draw(cairo_t* c, const std::vector<ChartRow>& rows, const std::string& title,
          const ChartLayout& l) {
  set_rgb(c, 0xffffff);
  cairo_paint(c);
  set_rgb(c, 0x000000);
  text_at(c, 12, 24, title, 16, true);
  set_rgb(c, 0x444444);
  text_at(c, 12, 44,
          "Fraction of the roofline measured in the same run (100% = at the roofline); per "
          "row the fastest run bench did not warn about",
          12);
  // Legend.
  double lx = 12;
  const double ly = 58;
  auto swatch = [&](uint32_t rgb, const std::string& label, bool tick) {
    set_rgb(c, rgb);
    if (tick) {
      cairo_rectangle(c, lx + 6, ly - 10, 2, 14);
    } else {
      cairo_rectangle(c, lx, ly - 9, 14, 10);
    }
    cairo_fill(c);
    set_rgb(c, 0x222222);
    text_at(c, lx + 20, ly, label, 12);
    lx += 20 + text_width(c, label) + 24;
  };
  swatch(kFirstTokenColour, "time to first token (roofline / measured)", false);
  swatch(kDecodeColour, "decode (measured / roofline)", false);
  swatch(0x000000, "target of the speed issue", true);

  // Grid: every 25%, 100% darker.
  const double grid_top = l.first_row - 6;
  const double grid_bottom = l.first_row + static_cast<double>(rows.size()) * l.row_pitch;
  const auto lines = std::lround(ChartLayout::kMaxFraction * 4);
  for (int i = 0; i <= lines; ++i) {
    const double f = i / 4.0, x = l.x0 + f * l.scale;
    set_rgb(c, i == 4 ? 0x888888 : 0xdddddd);
    cairo_rectangle(c, x - 0.5, grid_top, 1, grid_bottom - grid_top);
    cairo_fill(c);
    set_rgb(c, 0x444444);
    const std::string label = percent(f);
    cairo_set_font_size(c, 11);
    text_at(c, x - text_width(c, label) / 2, grid_bottom + 16, label, 11);
  }

  for (size_t r = 0; r < rows.size(); ++r) {
    const ChartRow& row = rows[r];
    const int ri = static_cast<int>(r);
    set_rgb(c, 0x000000);
    text_at(c, 12, l.bar_top(ri, 0) + 13, row.preset, 13, true);
    set_rgb(c, 0x444444);
    const std::string runs =
        row.dtype + ", " + std::to_string(row.runs) + (row.runs == 1 ? " run" : " runs") +
        (row.unwarned < row.runs ? " (" + std::to_string(row.runs - row.unwarned) + " warned)"
                                 : "");
    text_at(c, 12, l.bar_top(ri, 1) + 13, runs, 12);
    for (int b = 0; b < 2; ++b) {
      const Figure& f = b == 0 ? row.first_token : row.decode;
      const double top = l.bar_top(ri, b);
      const double w = std::min(f.fraction, ChartLayout::kMaxFraction) * l.scale;
      set_rgb(c, b == 0 ? kFirstTokenColour : kDecodeColour);
      cairo_rectangle(c, l.x0, top, w, l.bar_height);
      cairo_fill(c);
      if (f.target > 0) {
        set_rgb(c, 0x000000);
        // (on whole pixels, so that the mark is sharp)
        cairo_rectangle(c, std::round(l.x0 + f.target * l.scale) - 1, top - 2, 2, l.bar_height + 4);
        cairo_fill(c);
      }
      char value[64];
      if (f.value <= 0) {
        std::snprintf(value, sizeof(value), "not measured");
      } else if (f.fraction <= 0) {
        std::snprintf(value, sizeof(value),
                      b == 0 ? "%.2f s, no roofline" : "%.2f tok/s, no roofline", f.value);
      } else {
        std::snprintf(value, sizeof(value), b == 0 ? "%.2f s  %s" : "%.2f tok/s  %s", f.value,
                      percent(f.fraction).c_str());
      }
      cairo_set_font_size(c, 12);
      const double tw = text_width(c, value);
      // After the bar (and its target mark), or inside it in white where that would run
      // past the picture's edge.
      double tx = l.x0 + std::max(w, f.target * l.scale) + 6;
      set_rgb(c, 0x222222);
      if (tx + tw > l.width - 4) {
        tx = l.x0 + w - tw - 6;
        set_rgb(c, 0xffffff);
      }
      text_at(c, tx, top + 13.5, value, 12);
    }
  }
}

using Surface = std::unique_ptr<cairo_surface_t, SurfaceDeleter>;

// A new surface of the layout's size with the chart drawn on it.
Result<Surface> drawn(const std::vector<ChartRow>& rows, const std::string& title,
                      cairo_format_t format, const ChartLayout& l) {
  Surface s(cairo_image_surface_create(format, l.width, l.height));
  if (cairo_surface_status(s.get()) != CAIRO_STATUS_SUCCESS) {
    return internal_error(std::string("chart surface: ") +
                          cairo_status_to_string(cairo_surface_status(s.get())));
  }
  {
    std::unique_ptr<cairo_t, ContextDeleter> c(cairo_create(s.get()));
    draw(c.get(), rows, title, l);
  }
  cairo_surface_flush(s.get());
  return s;
}

}  // namespace

Result<std::vector<BenchRun>> parse_runs(const std::string& jsonl, const std::string& name) {
  std::vector<BenchRun> runs;
  std::istringstream in(jsonl);
  std::string line;
  for (int n = 1; std::getline(in, line); ++n) {
    if (line.find_first_not_of(" \t\r") == std::string::npos) continue;
    const std::string where = name + ":" + std::to_string(n);
    const json j = json::parse(line, nullptr, /*allow_exceptions=*/false);
    if (j.is_discarded() || !j.is_object())
      return invalid_argument(where + ": not a JSON object (a line of paligemma bench --json)");
    BenchRun r;
    PG_ASSIGN_OR_RETURN(r.preset, string_at(j, "preset", where));
    PG_ASSIGN_OR_RETURN(r.dtype, string_at(j, "dtype", where));
    PG_ASSIGN_OR_RETURN(const double tokens, number_at(j, "image_tokens", "", where));
    r.image_tokens = static_cast<int64_t>(tokens);
    PG_ASSIGN_OR_RETURN(r.ttft_s, number_at(j, "ttft_s", "", where));
    PG_ASSIGN_OR_RETURN(r.decode_tok_s, number_at(j, "decode_tok_s", "", where));
    PG_ASSIGN_OR_RETURN(r.roofline_ttft_s, number_at(j, "roofline", "ttft_s", where));
    PG_ASSIGN_OR_RETURN(r.roofline_decode_tok_s, number_at(j, "roofline", "decode_tok_s", where));
    if (j.contains("warnings")) {
      if (!j.at("warnings").is_array())
        return invalid_argument(where + ": field \"warnings\" is not an array");
      r.warned = !j.at("warnings").empty();
    }
    runs.push_back(std::move(r));
  }
  if (runs.empty())
    return invalid_argument(name + ": no runs (expected lines of paligemma bench --json)");
  return runs;
}

Result<std::vector<BenchRun>> read_runs(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) return not_found(path + ": cannot open the results file");
  std::stringstream text;
  text << in.rdbuf();
  if (in.bad()) return data_loss(path + ": cannot read the results file");
  return parse_runs(text.str(), path);
}

double first_token_target(const std::string& dtype, int64_t image_tokens) {
  if (image_tokens == 256) {
    if (dtype == "bf16") return 1 / 1.2;
    if (dtype == "int8" || dtype == "q4" || dtype == "w8a8") return 1 / 1.4;
  }
  if (image_tokens == 4096 && dtype == "bf16") return 1 / 1.4;
  return 0;
}

double decode_target(const std::string& dtype, int64_t image_tokens) {
  if (image_tokens != 256) return 0;
  if (dtype == "bf16") return 0.90;
  if (dtype == "int8" || dtype == "w8a8") return 0.80;
  if (dtype == "q4") return 0.75;
  return 0;
}

std::vector<ChartRow> chart_rows(const std::vector<BenchRun>& runs) {
  std::vector<std::pair<std::string, std::string>> order;
  std::map<std::pair<std::string, std::string>, std::vector<const BenchRun*>> groups;
  for (const BenchRun& r : runs) {
    auto key = std::make_pair(r.preset, r.dtype);
    if (!groups.contains(key)) order.push_back(key);
    groups[key].push_back(&r);
  }
  std::vector<ChartRow> rows;
  for (const auto& key : order) {
    const auto& all = groups[key];
    std::vector<const BenchRun*> ok;
    for (const BenchRun* r : all)
      if (!r->warned) ok.push_back(r);
    ChartRow row;
    row.preset = key.first;
    row.dtype = key.second;
    row.runs = static_cast<int>(all.size());
    row.unwarned = static_cast<int>(ok.size());
    if (ok.empty()) ok = all;
    const BenchRun* t = *std::min_element(ok.begin(), ok.end(),
                                          [](auto* a, auto* b) { return a->ttft_s < b->ttft_s; });
    const BenchRun* d = *std::max_element(
        ok.begin(), ok.end(), [](auto* a, auto* b) { return a->decode_tok_s < b->decode_tok_s; });
    row.first_token =
        figure(t->ttft_s, t->roofline_ttft_s, true, first_token_target(t->dtype, t->image_tokens));
    row.decode = figure(d->decode_tok_s, d->roofline_decode_tok_s, false,
                        decode_target(d->dtype, d->image_tokens));
    rows.push_back(std::move(row));
  }
  return rows;
}

double ChartLayout::bar_top(int row, int bar) const {
  return first_row + row * row_pitch + bar * (bar_height + 4);
}

ChartLayout chart_layout(size_t rows) {
  ChartLayout l;
  l.width = 1100;
  l.x0 = 300;
  l.scale = (l.width - l.x0 - 40) / ChartLayout::kMaxFraction;
  l.bar_height = 18;
  l.first_row = 86;
  l.row_pitch = 52;
  l.height = static_cast<int>(l.first_row + static_cast<double>(rows) * l.row_pitch + 30);
  return l;
}

Result<std::vector<uint32_t>> render_chart(const std::vector<ChartRow>& rows,
                                           const std::string& title, ChartLayout* layout) {
  const ChartLayout l = chart_layout(rows.size());
  PG_ASSIGN_OR_RETURN(const Surface s, drawn(rows, title, CAIRO_FORMAT_ARGB32, l));
  const unsigned char* data = cairo_image_surface_get_data(s.get());
  const int stride = cairo_image_surface_get_stride(s.get());
  std::vector<uint32_t> px(static_cast<size_t>(l.width) * l.height);
  for (int y = 0; y < l.height; ++y) {
    std::memcpy(&px[static_cast<size_t>(y) * l.width], data + static_cast<size_t>(y) * stride,
                static_cast<size_t>(l.width) * 4);
  }
  if (layout != nullptr) *layout = l;
  return px;
}

Status write_chart_png(const std::vector<ChartRow>& rows, const std::string& title,
                       const std::string& path) {
  PG_ASSIGN_OR_RETURN(const Surface s,
                      drawn(rows, title, CAIRO_FORMAT_RGB24, chart_layout(rows.size())));
  const cairo_status_t st = cairo_surface_write_to_png(s.get(), path.c_str());
  if (st != CAIRO_STATUS_SUCCESS)
    return invalid_argument(path + ": cannot write the chart (" + cairo_status_to_string(st) + ")");
  return Status::Ok();
}

}  // namespace pg::bench

// fontconfig (under cairo's text) keeps process-lifetime allocations that LeakSanitizer
// reports at exit (tools/test.sh runs with detect_leaks=1); weak, as src/tasks/draw.cc's.
// NOLINTNEXTLINE(bugprone-reserved-identifier,readability-identifier-naming): LSan's hook
extern "C" __attribute__((weak)) const char* __lsan_default_suppressions() {
  return "leak:libfontconfig.so\n";
}
