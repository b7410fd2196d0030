// Golden gradients: for every case in testdata/golden, the prefix-LM loss of the `train`
// entry within 1e-5 relative and every grad.<param> within 1e-3 of the tensor's max-abs
// (testdata/golden/README.md), through the training layer and through
// `paligemma loss --json --grads-out` (the way unseen checkpoints are checked). Prints
// the worst error per tensor class.
#include <gtest/gtest.h>

#include <cmath>
#include <cstdio>
#include <fstream>
#include <map>
#include <nlohmann/json.hpp>
#include <regex>

#include "io/safetensors.h"
#include "runtime/session.h"
#include "test_util.h"
#include "train/loss.h"

namespace {

using nlohmann::json;
using pg::testing::testdata;

constexpr double kLossRelTol = 1e-5;
constexpr double kGradRelTol = 1e-3;

// "...encoder.layers.1.mlp.fc1.weight" -> "...encoder.layers.*.mlp.fc1.weight"
std::string tensor_class(const std::string& name) {
  return std::regex_replace(name, std::regex("\\.layers\\.[0-9]+\\."), ".layers.*.");
}

struct GotGradient {
  pg::Shape shape;
  const float* data;
};

// Checks a loss and a set of gradients (name without "grad." -> tensor) against the case.
void check_case(const std::string& name, const std::string& how, double loss, int64_t tokens,
                const std::map<std::string, GotGradient>& got) {
  const std::string dir = testdata("golden/" + name);
  std::ifstream f(dir + "/expected.json");
  const json expected = json::parse(f)["train"];
  auto ref = pg::io::SafetensorsFile::open(dir + "/expected.safetensors");
  ASSERT_TRUE(ref.ok()) << ref.status().message();

  const double want_loss = expected["loss"].get<double>();
  const double loss_err = std::fabs(loss - want_loss) / std::fabs(want_loss);
  std::printf("[train-golden] %s (%s) loss %.8f want %.8f rel err %.3g (tolerance %.0e)\n",
              name.c_str(), how.c_str(), loss, want_loss, loss_err, kLossRelTol);
  EXPECT_LE(loss_err, kLossRelTol);
  EXPECT_EQ(tokens, static_cast<int64_t>(expected["input_ids"].size()) -
                        expected["num_prefix_tokens"].get<int64_t>());

  // A gradient that is analytically zero (SigLIP's key biases: softmax cancels them) holds
  // only float32 rounding noise in the reference (~1e-8), so every tensor's tolerance has a
  // floor of 1e-6 of the case's largest gradient (1e-3 of a tensor's max-abs otherwise).
  double global_max = 0;
  for (const auto& [key, view] : ref->tensors()) {
    if (key.rfind("grad.", 0) != 0) continue;
    const float* want = static_cast<const float*>(view.data);
    for (int64_t i = 0; i < view.numel(); ++i)
      global_max = std::max(global_max, std::fabs(double(want[i])));
  }
  const double noise_floor = 1e-6 * global_max;
  std::map<std::string, double> worst_by_class;
  size_t expected_count = 0;
  for (const auto& [key, view] : ref->tensors()) {
    if (key.rfind("grad.", 0) != 0) continue;
    ++expected_count;
    auto it = got.find(key.substr(5));
    ASSERT_NE(it, got.end()) << "no gradient for " << key;
    ASSERT_EQ(it->second.shape, view.shape) << key;
    const float* want = static_cast<const float*>(view.data);
    double max_abs = 0;
    for (int64_t i = 0; i < view.numel(); ++i)
      max_abs = std::max(max_abs, std::fabs(double(want[i])));
    const double tol = std::max(kGradRelTol * max_abs, noise_floor);
    EXPECT_TRUE(pg::testing::all_close(want, it->second.data, view.numel(), tol)) << key;
    const double rel = pg::testing::max_abs_error(want, it->second.data, view.numel()) /
                       std::max(max_abs, noise_floor);
    double& w = worst_by_class[tensor_class(key.substr(5))];
    w = std::max(w, rel);
  }
  EXPECT_EQ(got.size(), expected_count) << "gradients for parameters the reference does not have";
  for (const auto& [cls, rel] : worst_by_class) {
    std::printf("[train-golden] %s (%s) %-66s max|err|/max|g| = %.2g\n", name.c_str(), how.c_str(),
                cls.c_str(), rel);
  }
}

class TrainGoldenTest : public ::testing::TestWithParam<std::string> {};

TEST_P(TrainGoldenTest, LossAndEveryGradient) {
  const std::string dir = testdata("golden/" + GetParam());
  std::ifstream f(dir + "/expected.json");
  const json expected = json::parse(f)["train"];
  auto session = pg::runtime::Session::load(dir, nullptr);
  ASSERT_TRUE(session.ok()) << session.status().message();
  auto r =
      pg::train::compute_loss((*session)->model(), (*session)->tokenizer(), {dir + "/image.png"},
                              expected["prefix"], expected["suffix"], true);
  ASSERT_TRUE(r.ok()) << r.status().message();
  std::map<std::string, GotGradient> got;
  for (const auto& g : r->gradients) got[g.name] = {g.grad.shape(), g.grad.data()};
  check_case(GetParam(), "library", r->loss, r->tokens, got);
}

// `paligemma loss --json --grads-out G`: the command-line contract.
TEST_P(TrainGoldenTest, LossCommandGradsOut) {
  const std::string dir = testdata("golden/" + GetParam());
  std::ifstream f(dir + "/expected.json");
  const json expected = json::parse(f)["train"];
  pg::testing::TempDir tmp;
  const std::string grads = tmp.file("grads.safetensors"), out = tmp.file("out.json");
  const std::string cmd = std::string(PG_CLI_PATH) + " loss --model '" + dir + "' --image '" + dir +
                          "/image.png' --prefix '" + expected["prefix"].get<std::string>() +
                          "' --suffix '" + expected["suffix"].get<std::string>() +
                          "' --json --grads-out '" + grads + "' > '" + out + "'";
  ASSERT_EQ(std::system(cmd.c_str()), 0) << cmd;
  std::ifstream o(out);
  const json j = json::parse(o);
  auto file = pg::io::SafetensorsFile::open(grads);
  ASSERT_TRUE(file.ok()) << file.status().message();
  std::map<std::string, GotGradient> got;
  for (const auto& [key, view] : file->tensors()) {
    ASSERT_EQ(key.rfind("grad.", 0), 0u) << key;
    ASSERT_EQ(view.dtype, pg::DType::kF32) << key;
    got[key.substr(5)] = {view.shape, static_cast<const float*>(view.data)};
  }
  check_case(GetParam(), "cli", j["loss"].get<double>(), j["tokens"].get<int64_t>(), got);
}

INSTANTIATE_TEST_SUITE_P(Golden, TrainGoldenTest,
                         ::testing::ValuesIn(pg::testing::golden_model_cases()),
                         [](const auto& info) {
                           std::string s = info.param;
                           for (char& ch : s)
                             if (!isalnum(static_cast<unsigned char>(ch))) ch = '_';
                           return s;
                         });

}  // namespace
