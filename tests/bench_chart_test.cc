// bench/chart.h: reading bench's JSON lines, choosing each row's runs, and where the bars
// and target marks land in the picture.
#include <gtest/gtest.h>

#include <cmath>
#include <cstdio>
#include <fstream>
#include <nlohmann/json.hpp>
#include <string>

#include "bench/chart.h"

namespace pg::bench {
namespace {

// One `paligemma bench --json` line with the fields the chart reads (and one it ignores).
std::string line(const std::string& preset, const std::string& dtype, int tokens, double ttft,
                 double decode, double roof_ttft, double roof_decode, bool warned = false) {
  char buf[512];
  std::snprintf(buf, sizeof(buf),
                R"({"preset": "%s", "dtype": "%s", "image_tokens": %d, "ttft_s": %g, )"
                R"("decode_tok_s": %g, "load_s": 9.5, "roofline": {"ttft_s": %g, )"
                R"("decode_tok_s": %g}, "warnings": [%s]})",
                preset.c_str(), dtype.c_str(), tokens, ttft, decode, roof_ttft, roof_decode,
                warned ? R"("decode 1.2 x its roofline")" : "");
  return std::string(buf) + "\n";
}

TEST(BenchChart, ReadsRunsAndTheirWarnings) {
  const auto runs = parse_runs(line("paligemma-3b-224", "bf16", 256, 2.0, 11.0, 1.5, 14.0) + "\n" +
                                   line("paligemma-3b-896", "bf16", 4096, 40, 10, 28, 15, true),
                               "results.jsonl");
  ASSERT_TRUE(runs.ok()) << runs.status().message();
  ASSERT_EQ(runs->size(), 2u);  // (the blank line between them is skipped)
  EXPECT_EQ((*runs)[0].preset, "paligemma-3b-224");
  EXPECT_EQ((*runs)[0].dtype, "bf16");
  EXPECT_EQ((*runs)[0].image_tokens, 256);
  EXPECT_DOUBLE_EQ((*runs)[0].ttft_s, 2.0);
  EXPECT_DOUBLE_EQ((*runs)[0].decode_tok_s, 11.0);
  EXPECT_DOUBLE_EQ((*runs)[0].roofline_ttft_s, 1.5);
  EXPECT_DOUBLE_EQ((*runs)[0].roofline_decode_tok_s, 14.0);
  EXPECT_FALSE((*runs)[0].warned);
  EXPECT_TRUE((*runs)[1].warned);
  EXPECT_EQ((*runs)[1].image_tokens, 4096);
}

TEST(BenchChart, BadLinesNameTheFileLineAndField) {
  const std::string good = line("p", "bf16", 256, 2, 11, 1.5, 14);
  auto r = parse_runs(good + "{not json\n", "r.jsonl");
  ASSERT_FALSE(r.ok());
  EXPECT_NE(r.status().message().find("r.jsonl:2: not a JSON object"), std::string::npos)
      << r.status().message();

  r = parse_runs(good + R"({"preset": "p", "dtype": "bf16", "image_tokens": 256, "ttft_s": 2,)"
                        R"( "decode_tok_s": 3, "roofline": {"ttft_s": 1}})"
                        "\n",
                 "r.jsonl");
  ASSERT_FALSE(r.ok());
  EXPECT_NE(r.status().message().find("r.jsonl:2: missing field \"roofline.decode_tok_s\""),
            std::string::npos)
      << r.status().message();

  r = parse_runs(R"({"preset": "p", "dtype": "bf16", "image_tokens": "256"})", "r.jsonl");
  ASSERT_FALSE(r.ok());
  EXPECT_NE(r.status().message().find("r.jsonl:1: field \"image_tokens\" is not a number"),
            std::string::npos)
      << r.status().message();

  r = parse_runs(R"({"preset": 3, "dtype": "bf16"})", "r.jsonl");
  ASSERT_FALSE(r.ok());
  EXPECT_NE(r.status().message().find("r.jsonl:1: field \"preset\" is not a string"),
            std::string::npos)
      << r.status().message();

  r = parse_runs(R"({"preset": "p", "dtype": "bf16", "image_tokens": 256, "ttft_s": 2,)"
                 R"( "decode_tok_s": 3, "roofline": {"ttft_s": 1, "decode_tok_s": 4},)"
                 R"( "warnings": "none"})",
                 "r.jsonl");
  ASSERT_FALSE(r.ok());
  EXPECT_NE(r.status().message().find("r.jsonl:1: field \"warnings\" is not an array"),
            std::string::npos)
      << r.status().message();

  r = read_runs("/nonexistent-dir/results.jsonl");
  ASSERT_FALSE(r.ok());
  EXPECT_NE(
      r.status().message().find("/nonexistent-dir/results.jsonl: cannot open the results file"),
      std::string::npos)
      << r.status().message();

  r = parse_runs("\n \n", "empty.jsonl");
  ASSERT_FALSE(r.ok());
  EXPECT_NE(r.status().message().find("empty.jsonl: no runs"), std::string::npos);
}

TEST(BenchChart, RowsTakeTheFastestUnwarnedRunsWithTheirOwnRooflines) {
  const auto runs = parse_runs(
      // bf16: the fastest first token (1.8 s) and decode (13) come from a warned run, so the
      // row takes 1.9 s from the second run and 12 tok/s from the third, each with its
      // own run's roofline.
      line("paligemma-3b-224", "bf16", 256, 2.0, 11.0, 1.5, 14.0) +
          line("paligemma-3b-224", "bf16", 256, 1.8, 13.0, 1.5, 14.0, true) +
          line("paligemma-3b-224", "int8", 256, 1.5, 17.0, 0.75, 25.0) +
          line("paligemma-3b-224", "bf16", 256, 1.9, 10.0, 1.4, 14.0) +
          line("paligemma-3b-224", "bf16", 256, 2.1, 12.0, 1.5, 16.0) +
          // Every f32 run warned: the row uses them all.
          line("paligemma-3b-224", "f32", 256, 4.0, 5.0, 3.0, 7.0, true) +
          line("paligemma-3b-224", "f32", 256, 4.2, 5.5, 3.0, 7.0, true),
      "r.jsonl");
  ASSERT_TRUE(runs.ok()) << runs.status().message();
  const auto rows = chart_rows(*runs);
  ASSERT_EQ(rows.size(), 3u);  // in the order each model and dtype first appears
  EXPECT_EQ(rows[0].dtype, "bf16");
  EXPECT_EQ(rows[1].dtype, "int8");
  EXPECT_EQ(rows[2].dtype, "f32");

  EXPECT_EQ(rows[0].runs, 4);
  EXPECT_EQ(rows[0].unwarned, 3);
  EXPECT_DOUBLE_EQ(rows[0].first_token.value, 1.9);
  EXPECT_DOUBLE_EQ(rows[0].first_token.roofline, 1.4);
  EXPECT_DOUBLE_EQ(rows[0].first_token.fraction, 1.4 / 1.9);
  EXPECT_DOUBLE_EQ(rows[0].decode.value, 12.0);
  EXPECT_DOUBLE_EQ(rows[0].decode.fraction, 12.0 / 16.0);
  EXPECT_DOUBLE_EQ(rows[0].first_token.target, 1 / 1.2);
  EXPECT_DOUBLE_EQ(rows[0].decode.target, 0.90);

  EXPECT_DOUBLE_EQ(rows[1].first_token.fraction, 0.75 / 1.5);
  EXPECT_DOUBLE_EQ(rows[1].first_token.target, 1 / 1.4);
  EXPECT_DOUBLE_EQ(rows[1].decode.target, 0.80);

  EXPECT_EQ(rows[2].unwarned, 0);
  EXPECT_DOUBLE_EQ(rows[2].first_token.value, 4.0);
  EXPECT_DOUBLE_EQ(rows[2].decode.value, 5.5);
  EXPECT_EQ(rows[2].first_token.target, 0.0);  // the issue sets no f32 targets
  EXPECT_EQ(rows[2].decode.target, 0.0);
}

TEST(BenchChart, TargetsFollowTheIssue) {
  EXPECT_DOUBLE_EQ(first_token_target("q4", 256), 1 / 1.4);
  EXPECT_DOUBLE_EQ(decode_target("q4", 256), 0.75);
  // w8a8 is int8 with other scales: int8's targets.
  EXPECT_DOUBLE_EQ(first_token_target("w8a8", 256), 1 / 1.4);
  EXPECT_DOUBLE_EQ(decode_target("w8a8", 256), 0.80);
  EXPECT_DOUBLE_EQ(first_token_target("bf16", 4096), 1 / 1.4);  // 896 px
  EXPECT_EQ(decode_target("bf16", 4096), 0.0);
  EXPECT_EQ(first_token_target("int8", 4096), 0.0);
  EXPECT_EQ(first_token_target("bf16", 1024), 0.0);  // 448 px: none set
}

TEST(BenchChart, BarsEndAtTheirFractionsAndTargetsAreMarked) {
  const auto runs = parse_runs(line("a", "bf16", 256, 2.0, 12.0, 1.5, 16.0) +      // 75%, 75%
                                   line("b", "int8", 256, 1.6, 30.0, 0.8, 20.0) +  // 50%, 150%
                                   line("c", "f32", 256, 4.0, 5.0, 0, 0),          // no roofline
                               "r.jsonl");
  ASSERT_TRUE(runs.ok()) << runs.status().message();
  const auto rows = chart_rows(*runs);
  ChartLayout l;
  const auto px = render_chart(rows, "test", &l);
  ASSERT_TRUE(px.ok()) << px.status().message();
  ASSERT_EQ(px->size(), static_cast<size_t>(l.width) * l.height);
  auto at = [&](double x, double y) {
    return (*px)[static_cast<size_t>(std::lround(y)) * l.width +
                 static_cast<size_t>(std::lround(x))] &
           0xffffffu;
  };
  auto expect_bar = [&](int row, int bar, double fraction, uint32_t colour) {
    const double y = l.bar_top(row, bar) + l.bar_height / 2;
    const double end = l.x0 + fraction * l.scale;
    EXPECT_EQ(at(l.x0 + 2, y), colour) << "row " << row << " bar " << bar;
    EXPECT_EQ(at(end - 3, y), colour) << "row " << row << " bar " << bar;
    EXPECT_NE(at(end + 3, y), colour) << "row " << row << " bar " << bar;
  };
  expect_bar(0, 0, 0.75, kFirstTokenColour);
  expect_bar(0, 1, 0.75, kDecodeColour);
  expect_bar(1, 0, 0.5, kFirstTokenColour);
  // 150% is cut at the chart's edge.
  expect_bar(1, 1, ChartLayout::kMaxFraction, kDecodeColour);
  // No roofline: no bar.
  EXPECT_NE(at(l.x0 + 2, l.bar_top(2, 0) + l.bar_height / 2), kFirstTokenColour);
  // Target marks: bf16 first token at 1 / 1.2 (beyond its 75% bar), just above the bar.
  EXPECT_EQ(at(l.x0 + l.scale / 1.2, l.bar_top(0, 0) - 1), 0x000000u);
  EXPECT_EQ(at(l.x0 + 0.90 * l.scale, l.bar_top(0, 1) + l.bar_height / 2), 0x000000u);
  // f32: none.
  EXPECT_NE(at(l.x0 + l.scale / 1.2, l.bar_top(2, 0) - 1), 0x000000u);
}

TEST(BenchChart, WritesAPngFileOrSaysWhyNot) {
  const auto runs = parse_runs(line("a", "bf16", 256, 2.0, 12.0, 1.5, 16.0), "r.jsonl");
  ASSERT_TRUE(runs.ok());
  const std::string path = ::testing::TempDir() + "bench_chart_test.png";
  ASSERT_TRUE(write_chart_png(chart_rows(*runs), "test", path).ok());
  std::ifstream in(path, std::ios::binary);
  char magic[8] = {};
  in.read(magic, sizeof(magic));
  EXPECT_EQ(std::string(magic + 1, 3), "PNG");
  std::remove(path.c_str());
  const Status st = write_chart_png(chart_rows(*runs), "test", "/nonexistent-dir/x.png");
  ASSERT_FALSE(st.ok());
  EXPECT_NE(st.message().find("/nonexistent-dir/x.png: cannot write the chart"), std::string::npos)
      << st.message();
}

// The fields the chart reads are the ones `paligemma bench --json` writes (run.sh writes
// each run's object on one line).
TEST(BenchChart, ReadsWhatTheBenchCommandWrites) {
  const std::string cmd = std::string(PG_CLI_PATH) +
                          " bench --preset tiny-pg1 --random-weights --decode-tokens 4 --json"
                          " 2>/dev/null";
  FILE* pipe = popen(cmd.c_str(), "r");
  ASSERT_NE(pipe, nullptr);
  std::string out;
  char buf[4096];
  for (size_t n; (n = fread(buf, 1, sizeof(buf), pipe)) > 0;) out.append(buf, n);
  ASSERT_EQ(pclose(pipe), 0) << out;
  const auto j = nlohmann::json::parse(out);
  const auto runs = parse_runs(j.dump() + "\n", "bench output");
  ASSERT_TRUE(runs.ok()) << runs.status().message();
  ASSERT_EQ(runs->size(), 1u);
  const BenchRun& r = (*runs)[0];
  EXPECT_EQ(r.preset, "tiny-pg1");
  EXPECT_EQ(r.dtype, j.at("dtype").get<std::string>());
  EXPECT_EQ(r.image_tokens, j.at("image_tokens").get<int64_t>());
  EXPECT_GT(r.ttft_s, 0.0);
  EXPECT_GT(r.decode_tok_s, 0.0);
  EXPECT_GT(r.roofline_ttft_s, 0.0);  // (the probes ran)
  EXPECT_DOUBLE_EQ(r.roofline_decode_tok_s, j.at("roofline").at("decode_tok_s").get<double>());
  const auto rows = chart_rows(*runs);
  ASSERT_EQ(rows.size(), 1u);
  EXPECT_NEAR(rows[0].first_token.fraction, j.at("fraction_of_roofline").at("ttft").get<double>(),
              1e-9);
  EXPECT_NEAR(rows[0].decode.fraction, j.at("fraction_of_roofline").at("decode").get<double>(),
              1e-9);
}

}  // namespace
}  // namespace pg::bench
