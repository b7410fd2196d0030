// `paligemma loss` and `paligemma train` from the command line: output contracts, errors,
// checkpoints that `generate` loads, --resume after a kill (and after a crash while
// saving) reaching the same weights as an uninterrupted run, LoRA adapters, resolution.
#include <gtest/gtest.h>
#include <sys/wait.h>

#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <sstream>

#include "io/safetensors.h"
#include "test_util.h"

namespace {

using nlohmann::json;
using pg::testing::TempDir;
using pg::testing::testdata;
namespace fs = std::filesystem;

struct CliRun {
  int code = -1;
  std::string out, err;
};

// Runs the CLI with `args` (and environment assignments `env`), capturing both streams.
CliRun cli(const std::string& args, const TempDir& tmp, const std::string& env = "") {
  const std::string out = tmp.file("stdout.txt"), err = tmp.file("stderr.txt");
  const std::string cmd =
      env + " " + PG_CLI_PATH + " " + args + " > '" + out + "' 2> '" + err + "'";
  const int status = std::system(cmd.c_str());
  CliRun r;
  r.code = WIFEXITED(status) ? WEXITSTATUS(status) : -1;
  std::stringstream o, e;
  o << std::ifstream(out).rdbuf();
  e << std::ifstream(err).rdbuf();
  r.out = o.str();
  r.err = e.str();
  return r;
}

std::string read_bytes(const std::string& path) {
  std::stringstream s;
  s << std::ifstream(path, std::ios::binary).rdbuf();
  return s.str();
}

// Three golden images with answers of different lengths; returns the JSONL path.
std::string write_data(const TempDir& d) {
  for (const char* img : {"image.png", "image2.png", "image.jpg"}) {
    fs::copy_file(testdata(std::string("golden/tiny-pg1/") + img), d.file(img),
                  fs::copy_options::overwrite_existing);
  }
  std::ofstream f(d.file("data.jsonl"));
  f << "{\"image\": \"image.png\", \"prefix\": \"caption en\", \"suffix\": \"a red square\"}\n"
       "{\"image\": \"image2.png\", \"prefix\": \"caption en\", \"suffix\": \"a blue circle\"}\n"
       "{\"image\": \"image.jpg\", \"prefix\": \"describe en\", \"suffix\": \"red\"}\n";
  return d.file("data.jsonl");
}

std::string model() { return testdata("golden/tiny-pg1"); }

std::string train_args(const std::string& data, const std::string& out,
                       const std::string& extra = "") {
  return "train --model '" + model() + "' --data '" + data + "' --out '" + out +
         "' --steps 6 --batch 2 --lr 0.01 --warmup 2 --save-every 2 --threads 1 --log-every 2 " +
         extra;
}

TEST(TrainCliTest, LossJsonWithoutGradients) {
  TempDir t;
  const CliRun r = cli("loss --model '" + model() + "' --image '" + model() +
                           "/image.png' --prefix 'caption en' --suffix 'a red square and a blue "
                           "circle' --json --threads 1",
                       t);
  ASSERT_EQ(r.code, 0) << r.err;
  const json j = json::parse(r.out);
  std::ifstream e(model() + "/expected.json");
  const double want = json::parse(e)["train"]["loss"].get<double>();
  EXPECT_NEAR(j["loss"].get<double>(), want, 1e-5 * want);
  EXPECT_EQ(j["tokens"].get<int64_t>(), 14);
}

TEST(TrainCliTest, LossErrorsNameWhatIsWrong) {
  TempDir t;
  CliRun r =
      cli("loss --model '" + model() + "' --image /nonexistent.png --prefix p --suffix s", t);
  EXPECT_EQ(r.code, 1);
  EXPECT_NE(r.err.find("/nonexistent.png"), std::string::npos) << r.err;
  r = cli(
      "loss --model '" + model() + "' --image '" + model() + "/image.png' --prefix '' --suffix s",
      t);
  EXPECT_EQ(r.code, 1);
  EXPECT_NE(r.err.find("prompt is empty"), std::string::npos) << r.err;
  r = cli("loss --model '" + model() + "' --prefix p --suffix s", t);
  EXPECT_EQ(r.code, 2) << "a missing flag is a command-line error";
}

TEST(TrainCliTest, TrainShowsProgressAndWritesALoadableCheckpoint) {
  TempDir t;
  const std::string data = write_data(t);
  const CliRun r =
      cli(train_args(data, t.file("out"), "--json --eval-data '" + data + "' --eval-every 3"), t);
  ASSERT_EQ(r.code, 0) << r.err;
  const json j = json::parse(r.out);
  EXPECT_EQ(j["steps"], 6);
  EXPECT_LT(j["last_loss"].get<double>(), j["first_loss"].get<double>());
  EXPECT_TRUE(j.contains("eval_exact_match"));
  for (const char* want :
       {"step 2/6", "step 6/6", "tok/s", "ETA", "saved checkpoint at step 6", "[eval] step 3"}) {
    EXPECT_NE(r.err.find(want), std::string::npos) << "no \"" << want << "\" in\n" << r.err;
  }
  const CliRun g =
      cli("generate --model '" + t.file("out") + "' --image '" + data.substr(0, data.rfind('/')) +
              "/image.png' --prompt 'caption en' --max-tokens 4 --json --threads 1",
          t);
  ASSERT_EQ(g.code, 0) << g.err;
  EXPECT_TRUE(json::parse(g.out).contains("ids"));
}

// A run killed after step 3 (last save at step 2) and resumed ends with the same weights,
// byte for byte, as a run never interrupted.
TEST(TrainCliTest, ResumeAfterKillMatchesUninterruptedRun) {
  TempDir t;
  const std::string data = write_data(t);
  ASSERT_EQ(cli(train_args(data, t.file("a")), t).code, 0);
  const CliRun killed = cli(train_args(data, t.file("b")), t, "PG_TRAIN_CRASH_AFTER_STEP=3");
  ASSERT_EQ(killed.code, 99) << killed.err;
  const CliRun resumed = cli(train_args(data, t.file("b"), "--resume"), t);
  ASSERT_EQ(resumed.code, 0) << resumed.err;
  EXPECT_NE(resumed.err.find("resumed from step 2"), std::string::npos) << resumed.err;
  EXPECT_EQ(read_bytes(t.file("a/model.safetensors")), read_bytes(t.file("b/model.safetensors")));
  EXPECT_EQ(read_bytes(t.file("a/train_state.safetensors")),
            read_bytes(t.file("b/train_state.safetensors")));
}

// A crash halfway through writing the training state leaves the previous state intact.
TEST(TrainCliTest, CrashWhileSavingKeepsTheLastGoodState) {
  TempDir t;
  const std::string data = write_data(t);
  ASSERT_EQ(cli(train_args(data, t.file("a")), t).code, 0);
  ASSERT_EQ(cli(train_args(data, t.file("b")), t, "PG_TRAIN_CRASH_AFTER_STEP=4").code, 99);
  const CliRun crashed =
      cli(train_args(data, t.file("b"), "--resume"), t, "PG_TRAIN_CRASH_IN_SAVE=1");
  ASSERT_EQ(crashed.code, 99) << crashed.err;
  auto state = pg::io::SafetensorsFile::open(t.file("b/train_state.safetensors"));
  ASSERT_TRUE(state.ok()) << state.status().message();
  EXPECT_EQ(state->metadata().at("step"), "4");
  const CliRun resumed = cli(train_args(data, t.file("b"), "--resume"), t);
  ASSERT_EQ(resumed.code, 0) << resumed.err;
  EXPECT_EQ(read_bytes(t.file("a/model.safetensors")), read_bytes(t.file("b/model.safetensors")));
  for (const auto& e : fs::directory_iterator(t.file("b"))) {
    EXPECT_EQ(e.path().filename().string().find(".tmp."), std::string::npos)
        << "stale " << e.path();
  }
}

TEST(TrainCliTest, BadTrainingInputs) {
  TempDir t;
  const std::string data = write_data(t);
  EXPECT_EQ(cli(train_args(data, t.file("o"), "--train everything"), t).code, 2);
  CliRun r = cli(train_args(data, t.file("o"), "--resume"), t);
  EXPECT_EQ(r.code, 1);
  EXPECT_NE(r.err.find("no training state"), std::string::npos) << r.err;
  r = cli(train_args(t.file("missing.jsonl"), t.file("o")), t);
  EXPECT_EQ(r.code, 1);
  EXPECT_NE(r.err.find("missing.jsonl"), std::string::npos) << r.err;
  ASSERT_EQ(cli(train_args(data, t.file("o")), t, "PG_TRAIN_CRASH_AFTER_STEP=2").code, 99);
  r = cli(train_args(data, t.file("o"), "--resume --lr 0.5"), t);
  EXPECT_EQ(r.code, 1);
  EXPECT_NE(r.err.find("other settings: lr"), std::string::npos) << r.err;
  r = cli("train --model '" + model() + "' --data '" + data + "' --out '" + model() + "'", t);
  EXPECT_EQ(r.code, 1);
  EXPECT_NE(r.err.find("must not be the --model folder"), std::string::npos) << r.err;
}

TEST(TrainCliTest, LoraAdapterInPeftLayout) {
  TempDir t;
  const std::string data = write_data(t);
  const CliRun r = cli(
      train_args(data, t.file("o"), "--train lora --lora-rank 2 --lora-alpha 4 --save-adapter"), t);
  ASSERT_EQ(r.code, 0) << r.err;
  auto f = pg::io::SafetensorsFile::open(t.file("o/adapter_model.safetensors"));
  ASSERT_TRUE(f.ok()) << f.status().message();
  const auto& ts = f->tensors();
  auto a = ts.find("base_model.model.language_model.model.layers.0.self_attn.q_proj.lora_A.weight");
  ASSERT_NE(a, ts.end());
  EXPECT_EQ(a->second.shape, (pg::Shape{2, 64}));
  EXPECT_NE(ts.find("base_model.model.language_model.model.layers.1.mlp.down_proj.lora_B.weight"),
            ts.end());
  EXPECT_EQ(ts.size(), 2u * 7u * 2u);
  std::ifstream c(t.file("o/adapter_config.json"));
  const json cfg = json::parse(c);
  EXPECT_EQ(cfg["r"], 2);
  EXPECT_EQ(cfg["lora_alpha"], 4.0);
  EXPECT_EQ(cfg["peft_type"], "LORA");
  EXPECT_FALSE(fs::exists(t.file("o/model.safetensors")));
}

// Stage 2: a checkpoint trained at another resolution; generate takes it.
TEST(TrainCliTest, ResolutionIncrease) {
  TempDir t;
  const std::string data = write_data(t);
  const CliRun r =
      cli(train_args(data, t.file("o"), "--image-size 112 --steps 2 --save-every 0"), t);
  ASSERT_EQ(r.code, 0) << r.err;
  const CliRun info = cli("info --model '" + t.file("o") + "'", t);
  ASSERT_EQ(info.code, 0) << info.err;
  const json j = json::parse(info.out);
  EXPECT_EQ(j["image_size"], 112);
  EXPECT_EQ(j["image_tokens"], 64);
  const CliRun g = cli("generate --model '" + t.file("o") + "' --image '" + t.file("image.png") +
                           "' --prompt 'caption en' --max-tokens 3 --threads 1",
                       t);
  EXPECT_EQ(g.code, 0) << g.err;
}

}  // namespace
