// build/paligemma as outside tools use it (../shared/CONTRACTS.md): exit codes, stderr
// messages, --json, --logits-out.
#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <sys/wait.h>

#include <algorithm>
#include <fstream>
#include <nlohmann/json.hpp>

#include "io/npy.h"
#include "io/safetensors.h"
#include "test_util.h"

namespace {

using pg::testing::TempDir;
using pg::testing::testdata;
using ::testing::HasSubstr;

struct CliRun {
  int exit_code = -1;
  bool signaled = false;
  std::string out, err;
};

std::string slurp(const std::string& path) {
  std::ifstream f(path, std::ios::binary);
  return std::string((std::istreambuf_iterator<char>(f)), std::istreambuf_iterator<char>());
}

CliRun run_cli(const std::string& args) {
  TempDir tmp;
  const std::string cmd = std::string(PG_CLI_PATH) + " " + args + " >" + tmp.file("out") + " 2>" +
                          tmp.file("err") + " </dev/null";
  const int status = std::system(cmd.c_str());
  CliRun r;
  r.signaled = WIFSIGNALED(status);
  r.exit_code = WIFEXITED(status) ? WEXITSTATUS(status) : -1;
  r.out = slurp(tmp.file("out"));
  r.err = slurp(tmp.file("err"));
  return r;
}

const std::string kPg1 = testdata("golden/tiny-pg1");

TEST(Cli, GenerateJsonMatchesGolden) {
  const auto expected = nlohmann::json::parse(slurp(kPg1 + "/expected.json"));
  const auto& p = expected["prompts"][0];
  CliRun r = run_cli("generate --model " + kPg1 + " --image " + kPg1 + "/image.png --prompt \"" +
                     p["prompt"].get<std::string>() + "\" --max-tokens 12 --json --threads 2");
  ASSERT_EQ(r.exit_code, 0) << r.err;
  const auto j = nlohmann::json::parse(r.out);
  EXPECT_EQ(j["ids"], p["generated_ids"]);
  EXPECT_EQ(j["text"], p["generated_text"]);
  EXPECT_TRUE(j["timings"]["ttft_s"].is_number());
  EXPECT_TRUE(j["timings"]["decode_tok_s"].is_number());
}

TEST(Cli, LogitsOutHoldsEveryStep) {
  TempDir tmp;
  CliRun r = run_cli("generate --model " + kPg1 + " --image " + kPg1 +
                     "/image.png --prompt \"caption en\"" +
                     " --max-tokens 12 --greedy --logits-out " + tmp.file("logits.npy"));
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_EQ(r.out, "((((((((((((\n");  // streamed text, then a newline
  auto npy = pg::io::read_npy(tmp.file("logits.npy"));
  ASSERT_TRUE(npy.ok()) << npy.status().message();
  ASSERT_EQ(npy->shape, (pg::Shape{12, 2112}));
  auto want = pg::io::SafetensorsFile::open(kPg1 + "/expected.safetensors");
  ASSERT_TRUE(want.ok());
  const auto& dec = want->tensors().at("decode_logits.0");
  EXPECT_TRUE(pg::testing::all_close(static_cast<const float*>(dec.data),
                                     reinterpret_cast<const float*>(npy->data.data()), 12 * 2112,
                                     1e-4));
}

TEST(Cli, SamplingFlagsAreReproducible) {
  const std::string args =
      "generate --model " + kPg1 + " --image " + kPg1 +
      "/image.png --prompt \"caption en\" --max-tokens 6 --temperature 1.3 --top-k 40 "
      "--top-p 0.9 --seed 9 --json";
  CliRun a = run_cli(args), b = run_cli(args);
  ASSERT_EQ(a.exit_code, 0) << a.err;
  EXPECT_EQ(nlohmann::json::parse(a.out)["ids"], nlohmann::json::parse(b.out)["ids"]);
}

TEST(Cli, HelpDocumentsTheFlags) {
  CliRun r = run_cli("generate --help");
  EXPECT_EQ(r.exit_code, 0);
  for (const char* flag :
       {"--model", "--image", "--prompt", "--threads", "--max-tokens", "--greedy", "--temperature",
        "--top-k", "--top-p", "--seed", "--json", "--logits-out"}) {
    EXPECT_THAT(r.out, HasSubstr(flag));
  }
}

TEST(Cli, ErrorsGoToStderrWithAnExitCode) {
  CliRun missing_model = run_cli("generate --model /nonexistent --image x.png --prompt hi");
  EXPECT_EQ(missing_model.exit_code, 1);
  EXPECT_THAT(missing_model.err, HasSubstr("paligemma: error: "));
  EXPECT_THAT(missing_model.err, HasSubstr("/nonexistent"));
  EXPECT_TRUE(missing_model.out.empty());

  CliRun no_flags = run_cli("generate");
  EXPECT_GT(no_flags.exit_code, 0);
  EXPECT_LT(no_flags.exit_code, 128);
  EXPECT_THAT(no_flags.err, HasSubstr("--model"));

  CliRun bad_image = run_cli("generate --model " + kPg1 + " --image " + kPg1 +
                             "/config.json --prompt \"caption en\"");
  EXPECT_EQ(bad_image.exit_code, 1);
  EXPECT_THAT(bad_image.err, HasSubstr("not a JPEG or PNG image"));

  CliRun conflict = run_cli("generate --model " + kPg1 + " --image " + kPg1 +
                            "/image.png --prompt x --greedy --temperature 0.7");
  EXPECT_GT(conflict.exit_code, 0);
  EXPECT_FALSE(conflict.signaled);
}

TEST(Cli, Info) {
  CliRun r = run_cli("info --model " + testdata("golden/tiny-pg2"));
  ASSERT_EQ(r.exit_code, 0) << r.err;
  const auto j = nlohmann::json::parse(r.out);
  EXPECT_EQ(j["decoder"], "gemma2");
  EXPECT_EQ(j["image_tokens"], 16);
}

TEST(Cli, BenchOnATinyPresetKeepsTheContract) {
  // The speed issue's command at a size CI can afford: the contract's keys, with values
  // that are consistent, and the per-op profile accounting for the run's kernels.
  for (const std::string dtype : {"f32", "bf16", "int8", "q4"}) {
    CliRun r = run_cli("bench --preset tiny-pg2 --random-weights --dtype " + dtype +
                       " --threads 2 --decode-tokens 8 --profile --json");
    ASSERT_EQ(r.exit_code, 0) << r.err;
    const auto j = nlohmann::json::parse(r.out);
    EXPECT_EQ(j["preset"], "tiny-pg2");
    EXPECT_EQ(j["dtype"], dtype);
    EXPECT_EQ(j["threads"], 2);
    for (const char* key : {"load_s", "vision_s", "ttft_s", "decode_tok_s", "peak_rss_mb"}) {
      EXPECT_GT(j[key].get<double>(), 0) << key;
    }
    EXPECT_GE(j["ttft_s"].get<double>(), j["vision_s"].get<double>());
    // One warm-up pass by default, timed apart as the cold start.
    EXPECT_EQ(j["warmup"], 1);
    EXPECT_GE(j["cold_ttft_s"].get<double>(), j["cold_vision_s"].get<double>());
    EXPECT_GT(j["cold_vision_s"].get<double>(), 0);
    EXPECT_GT(j["roofline"]["ttft_s"].get<double>(), 0);
    EXPECT_GT(j["roofline"]["decode_tok_s"].get<double>(), 0);
    EXPECT_GT(j["roofline"]["bandwidth_gbs"].get<double>(), 0);
    // Warnings about the fractions (roofline_warnings, tested in api_test): a list in the
    // JSON, each also on stderr. (At this size noise may raise one; none is asserted.)
    ASSERT_TRUE(j["warnings"].is_array());
    for (const auto& w : j["warnings"])
      EXPECT_THAT(r.err, HasSubstr("paligemma bench: warning: " + w.get<std::string>()));
    // Every decode step runs the decoder's matrices: 8 tokens x (7 per layer x 3 layers
    // (bench/presets/tiny-pg2.json) + the LM head).
    long long decode_matmuls = 0;
    for (const auto& op : j["profile"]["decode"]) {
      if (op["op"].get<std::string>().rfind("matmul", 0) == 0)
        decode_matmuls += op["calls"].get<long long>();
    }
    EXPECT_EQ(decode_matmuls, 8 * (7 * 3 + 1)) << r.out;
    // One timed pass by default, the figure itself.
    EXPECT_EQ(j["repeat"], 1);
    ASSERT_EQ(j["ttft_runs_s"].size(), 1u);
    EXPECT_EQ(j["ttft_runs_s"][0].get<double>(), j["ttft_s"].get<double>());
    EXPECT_EQ(j["vision_runs_s"][0].get<double>(), j["vision_s"].get<double>());
  }
  // Three timed passes: every one in the JSON, the figure their median, the profile one
  // pass's (the same calls as with one pass).
  auto ttft_calls = [](const nlohmann::json& j) {
    long long calls = 0;
    for (const auto& op : j["profile"]["ttft"]) calls += op["calls"].get<long long>();
    return calls;
  };
  const std::string args = "bench --preset tiny-pg2 --random-weights --no-probe --profile --json";
  CliRun one = run_cli(args);
  CliRun three = run_cli(args + " --repeat 3");
  ASSERT_EQ(one.exit_code, 0) << one.err;
  ASSERT_EQ(three.exit_code, 0) << three.err;
  const auto j1 = nlohmann::json::parse(one.out), j3 = nlohmann::json::parse(three.out);
  EXPECT_EQ(j3["repeat"], 3);
  ASSERT_EQ(j3["ttft_runs_s"].size(), 3u);
  std::vector<double> runs = j3["ttft_runs_s"].get<std::vector<double>>();
  std::sort(runs.begin(), runs.end());
  EXPECT_EQ(j3["ttft_s"].get<double>(), runs[1]);
  EXPECT_GT(ttft_calls(j1), 0);
  EXPECT_EQ(ttft_calls(j3), ttft_calls(j1));
  CliRun zero = run_cli("bench --preset tiny-pg1 --random-weights --repeat 0");
  EXPECT_NE(zero.exit_code, 0);
  EXPECT_THAT(zero.err, HasSubstr("--repeat"));
  // Without warm-up the timed pass is the cold one.
  CliRun cold = run_cli("bench --preset tiny-pg1 --random-weights --warmup 0 --no-probe --json");
  ASSERT_EQ(cold.exit_code, 0) << cold.err;
  const auto jc = nlohmann::json::parse(cold.out);
  EXPECT_EQ(jc["cold_ttft_s"].get<double>(), jc["ttft_s"].get<double>());
  EXPECT_EQ(jc["cold_vision_s"].get<double>(), jc["vision_s"].get<double>());
  CliRun negative = run_cli("bench --preset tiny-pg1 --random-weights --warmup -1");
  EXPECT_NE(negative.exit_code, 0);
  EXPECT_THAT(negative.err, HasSubstr("--warmup: Value -1 not in range"));
  CliRun bad = run_cli("bench --preset no-such-model --random-weights");
  EXPECT_EQ(bad.exit_code, 1);
  EXPECT_THAT(bad.err, HasSubstr("unknown preset \"no-such-model\""));
  CliRun no_weights = run_cli("bench --preset tiny-pg1");
  EXPECT_NE(no_weights.exit_code, 0);
  EXPECT_THAT(no_weights.err, HasSubstr("--random-weights"));
}

}  // namespace
