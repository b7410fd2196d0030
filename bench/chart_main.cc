// bench_chart RESULTS.jsonl OUT.png [TITLE]: the picture of a bench/run.sh results file
// (see chart.h); prints one line per model and dtype.
#include <cstdio>
#include <string>

#include "bench/chart.h"

int main(int argc, char** argv) {
  if (argc < 3 || argc > 4) {
    std::fprintf(stderr, "usage: %s RESULTS.jsonl OUT.png [TITLE]\n", argv[0]);
    return 2;
  }
  auto runs = pg::bench::read_runs(argv[1]);
  if (!runs.ok()) {
    std::fprintf(stderr, "error: %s\n", runs.status().message().c_str());
    return 1;
  }
  const auto rows = pg::bench::chart_rows(*runs);
  const std::string title = argc == 4 ? argv[3] : "PaliGemma speed against this machine's roofline";
  if (auto st = pg::bench::write_chart_png(rows, title, argv[2]); !st.ok()) {
    std::fprintf(stderr, "error: %s\n", st.message().c_str());
    return 1;
  }
  for (const auto& r : rows) {
    std::printf("%s %s: first token %.2f s (%.0f%%), decode %.2f tok/s (%.0f%%)\n",
                r.preset.c_str(), r.dtype.c_str(), r.first_token.value,
                100 * r.first_token.fraction, r.decode.value, 100 * r.decode.fraction);
  }
  std::printf("wrote %s\n", argv[2]);
  return 0;
}
