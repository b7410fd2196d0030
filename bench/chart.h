// The speed table of bench/run.sh as a picture: per model and dtype, the first token and
// the decode rate as fractions of the roofline measured in the same run, beside the
// targets of the speed issue (#3). `bench_chart RESULTS.jsonl OUT.png` draws it from the
// JSON lines of `paligemma bench --json`.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "base/status.h"

namespace pg::bench {

// One line of `paligemma bench --json`: the fields the chart reads.
struct BenchRun {
  std::string preset, dtype;
  int64_t image_tokens = 0;
  double ttft_s = 0, decode_tok_s = 0;                    // measured
  double roofline_ttft_s = 0, roofline_decode_tok_s = 0;  // the same run's roofline
  bool warned = false;  // bench warned that the run's fractions cannot be trusted
};

// jsonl: the text of a results file (one JSON object per line; blank lines skipped).
// name: the file, for messages, which also give the line and the missing or bad field.
Result<std::vector<BenchRun>> parse_runs(const std::string& jsonl, const std::string& name);
// The same from the file at path.
Result<std::vector<BenchRun>> read_runs(const std::string& path);

// A figure and its fraction of the roofline (1 = at the roofline), with the issue's
// target fraction (0: the issue sets none for this model and dtype).
struct Figure {
  double value = 0, roofline = 0, fraction = 0, target = 0;
};

// Per model and dtype, in the order they first appear: the fastest first token and the
// fastest decode over the runs bench did not warn about (all runs when it warned about
// every one), each with its own run's roofline, as bench/run.sh's second table.
struct ChartRow {
  std::string preset, dtype;
  int runs = 0, unwarned = 0;
  Figure first_token, decode;
};
std::vector<ChartRow> chart_rows(const std::vector<BenchRun>& runs);

// The targets as fractions of the roofline: first token at 224 px within 1.2 x the
// roofline in bf16 and 1.4 x with int8 activations (int8, q4), at 896 px (4096 image
// tokens) 1.4 x in bf16; decode at 224 px 90% (bf16), 80% (int8), 75% (q4). 0 elsewhere.
double first_token_target(const std::string& dtype, int64_t image_tokens);
double decode_target(const std::string& dtype, int64_t image_tokens);

// Where the chart puts things, in pixels: bar b (0: first token, 1: decode) of row r spans
// x from x0 to x0 + fraction * scale (fractions past kMaxFraction are cut there), y from
// bar_top(r, b) for bar_height.
struct ChartLayout {
  static constexpr double kMaxFraction = 1.25;
  int width = 0, height = 0;
  double x0 = 0, scale = 0, bar_height = 0, first_row = 0, row_pitch = 0;
  double bar_top(int row, int bar) const;
};
ChartLayout chart_layout(size_t rows);

// The chart as ARGB32 pixels (row-major, layout.width per row); title: its first line.
Result<std::vector<uint32_t>> render_chart(const std::vector<ChartRow>& rows,
                                           const std::string& title, ChartLayout* layout);
// The chart written as a PNG file at path.
Status write_chart_png(const std::vector<ChartRow>& rows, const std::string& title,
                       const std::string& path);

// Bar colours (RGB): first token, decode; target marks are black.
inline constexpr uint32_t kFirstTokenColour = 0x1f77b4, kDecodeColour = 0xff7f0e;

}  // namespace pg::bench
