// Golden gradients: for every case in testdata/golden, the prefix-LM loss of the `train`
// entry within 1e-5 relative and every grad.<param> within 1e-3 of the tensor's max-abs
// (testdata/golden/README.md). Prints the worst error per tensor class.
#include <gtest/gtest.h>

#include <cmath>
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

// "vision_tower.vision_model.encoder.layers.1.mlp.fc1.weight" -> "vision ... layers.*.mlp.fc1.weight"
std::string tensor_class(const std::string& name) {
  return std::regex_replace(name, std::regex("\\.layers\\.[0-9]+\\."), ".layers.*.");
}

class TrainGoldenTest : public ::testing::TestWithParam<std::string> {};

TEST_P(TrainGoldenTest, LossAndEveryGradient) {
  const std::string dir = testdata("golden/" + GetParam());
  std::ifstream f(dir + "/expected.json");
  const json expected = json::parse(f)["train"];
  auto ref = pg::io::SafetensorsFile::open(dir + "/expected.safetensors");
  ASSERT_TRUE(ref.ok()) << ref.status().message();
  auto session = pg::runtime::Session::load(dir, nullptr);
  ASSERT_TRUE(session.ok()) << session.status().message();

  auto r = pg::train::compute_loss((*session)->model(), (*session)->tokenizer(), {dir + "/image.png"},
                                   expected["prefix"], expected["suffix"], true);
  ASSERT_TRUE(r.ok()) << r.status().message();
  const double want_loss = expected["loss"].get<double>();
  const double loss_err = std::fabs(r->loss - want_loss) / std::fabs(want_loss);
  std::printf("[train-golden] %s loss %.8f want %.8f rel err %.3g (tolerance %.0e)\n", GetParam().c_str(),
              r->loss, want_loss, loss_err, kLossRelTol);
  EXPECT_LE(loss_err, kLossRelTol);
  const int64_t want_tokens = static_cast<int64_t>(expected["input_ids"].size()) -
                              expected["num_prefix_tokens"].get<int64_t>();
  EXPECT_EQ(r->tokens, want_tokens);

  // Every expected gradient is produced, and nothing else.
  std::map<std::string, const pg::train::NamedGradient*> got;
  for (const auto& g : r->gradients) got["grad." + g.name] = &g;
  std::map<std::string, double> worst_by_class;
  int64_t expected_count = 0;
  // A gradient that is analytically zero (SigLIP's key biases: softmax cancels them) holds
  // only float32 rounding noise in the reference (~1e-8). Such tensors are checked against a
  // noise floor of 1e-6 of the case's largest gradient instead of their own max-abs.
  double global_max = 0;
  for (const auto& [name, view] : ref->tensors()) {
    if (name.rfind("grad.", 0) != 0) continue;
    const float* want = static_cast<const float*>(view.data);
    for (int64_t i = 0; i < view.numel(); ++i) global_max = std::max(global_max, std::fabs(double(want[i])));
  }
  const double noise_floor = 1e-6 * global_max;
  for (const auto& [name, view] : ref->tensors()) {
    if (name.rfind("grad.", 0) != 0) continue;
    ++expected_count;
    auto it = got.find(name);
    ASSERT_NE(it, got.end()) << "no gradient for " << name;
    const pg::Tensor& g = it->second->grad;
    ASSERT_EQ(g.shape(), view.shape) << name;
    const float* want = static_cast<const float*>(view.data);
    double max_abs = 0;
    for (int64_t i = 0; i < view.numel(); ++i) max_abs = std::max(max_abs, std::fabs(double(want[i])));
    const double tol = std::max(kGradRelTol * max_abs, noise_floor);
    EXPECT_TRUE(pg::testing::all_close(want, g.data(), view.numel(), tol)) << name;
    const double rel = pg::testing::max_abs_error(want, g.data(), view.numel()) / std::max(max_abs, noise_floor);
    double& w = worst_by_class[tensor_class(name.substr(5))];
    w = std::max(w, rel);
  }
  EXPECT_EQ(static_cast<int64_t>(r->gradients.size()), expected_count);
  for (const auto& [cls, rel] : worst_by_class) {
    std::printf("[train-golden] %s %-70s max |err| / max|g| = %.3g\n", GetParam().c_str(), cls.c_str(), rel);
  }
}

INSTANTIATE_TEST_SUITE_P(Golden, TrainGoldenTest, ::testing::ValuesIn(pg::testing::golden_model_cases()),
                         [](const auto& info) {
                           std::string s = info.param;
                           for (char& ch : s) if (!isalnum(static_cast<unsigned char>(ch))) ch = '_';
                           return s;
                         });

}  // namespace
