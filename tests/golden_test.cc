// Golden tests: every case in testdata/golden (tiny random PaliGemma / PaliGemma 2
// checkpoints) loaded through the public API and compared with the reference outputs
// at the tolerances of testdata/golden/README.md.
#include <gtest/gtest.h>

#include <fstream>
#include <map>
#include <memory>
#include <nlohmann/json.hpp>

#include "io/safetensors.h"
#include "paligemma/paligemma.h"
#include "test_util.h"

namespace {

using nlohmann::json;
using pg::testing::all_close;
using pg::testing::testdata;

// Tolerances from testdata/golden/README.md, for an engine computing in float32.
constexpr double kPixelTolPng = 1e-5;
constexpr double kPixelTolJpg = 2.0 / 255.0 * 2.0;
constexpr double kLogitTol = 1e-4;

struct Case {
  std::string dir;
  json expected;
  std::unique_ptr<pg::io::SafetensorsFile> tensors;
  std::unique_ptr<paligemma::Model> model;

  const pg::TensorView& tensor(const std::string& name) const {
    auto it = tensors->tensors().find(name);
    EXPECT_NE(it, tensors->tensors().end()) << "expected.safetensors lacks " << name;
    return it->second;
  }
  const float* f32(const std::string& name) const {
    const pg::TensorView& v = tensor(name);
    EXPECT_EQ(v.dtype, pg::DType::kF32);
    return static_cast<const float*>(v.data);
  }
};

// Compares and prints the max error, so a run reports how close the engine is.
::testing::AssertionResult close_and_report(const std::string& what, const float* want,
                                            const float* got, int64_t n, double tol) {
  std::printf("[golden] %-40s max |err| = %.3g (tolerance %.3g)\n", what.c_str(),
              pg::testing::max_abs_error(want, got, n), tol);
  return all_close(want, got, n, tol);
}

// Loads each case once for the whole binary.
Case& get_case(const std::string& name) {
  static std::map<std::string, std::unique_ptr<Case>> cache;
  auto& slot = cache[name];
  if (!slot) {
    slot = std::make_unique<Case>();
    slot->dir = testdata("golden/" + name);
    std::ifstream f(slot->dir + "/expected.json");
    slot->expected = json::parse(f);
    auto st = pg::io::SafetensorsFile::open(slot->dir + "/expected.safetensors");
    EXPECT_TRUE(st.ok()) << st.status().message();
    slot->tensors = std::make_unique<pg::io::SafetensorsFile>(std::move(st).value());
    auto m = paligemma::Model::load(slot->dir);
    EXPECT_TRUE(m.ok()) << m.status().message();
    slot->model = std::make_unique<paligemma::Model>(std::move(m).value());
  }
  return *slot;
}

class GoldenTest : public ::testing::TestWithParam<std::string> {
 protected:
  Case& c() { return get_case(GetParam()); }
};

TEST_P(GoldenTest, ModelInfoMatchesExpected) {
  Case& k = c();
  EXPECT_EQ(k.model->info().image_size, k.expected["image_size"].get<int64_t>());
  EXPECT_EQ(k.model->info().image_tokens, k.expected["num_image_tokens"].get<int64_t>());
  EXPECT_TRUE(k.model->warnings().empty());
}

TEST_P(GoldenTest, PixelValuesPng) {
  Case& k = c();
  auto px = k.model->pixel_values(k.dir + "/image.png");
  ASSERT_TRUE(px.ok()) << px.status().message();
  const pg::TensorView& want = k.tensor("pixel_values");
  ASSERT_EQ(static_cast<int64_t>(px->size()), want.numel());
  EXPECT_TRUE(close_and_report(GetParam() + " pixel_values", k.f32("pixel_values"), px->data(),
                               want.numel(), kPixelTolPng));
}

TEST_P(GoldenTest, PixelValuesJpeg) {
  Case& k = c();
  auto px = k.model->pixel_values(k.dir + "/image.jpg");
  ASSERT_TRUE(px.ok()) << px.status().message();
  const pg::TensorView& want = k.tensor("pixel_values_jpg");
  ASSERT_EQ(static_cast<int64_t>(px->size()), want.numel());
  EXPECT_TRUE(close_and_report(GetParam() + " pixel_values_jpg", k.f32("pixel_values_jpg"),
                               px->data(), want.numel(), kPixelTolJpg));
}

TEST_P(GoldenTest, ImageFeatures) {
  Case& k = c();
  auto f = k.model->image_features({k.dir + "/image.png"});
  ASSERT_TRUE(f.ok()) << f.status().message();
  const pg::TensorView& want = k.tensor("image_features");
  ASSERT_EQ(want.shape,
            (pg::Shape{k.model->info().image_tokens, k.model->info().text_hidden_size}));
  ASSERT_EQ(static_cast<int64_t>(f->size()), want.numel());
  EXPECT_TRUE(close_and_report(GetParam() + " image_features", k.f32("image_features"), f->data(),
                               want.numel(), kLogitTol));
}

// One prompt: input ids, greedy ids and text, and every logits row (KV-cache path).
void check_prompt(Case& k, const json& p, const std::vector<std::string>& images,
                  const std::string& last_name, const std::string& decode_name) {
  const std::string prompt = p["prompt"];
  SCOPED_TRACE("prompt \"" + prompt + "\"");
  auto ids = k.model->prompt_ids(prompt, static_cast<int64_t>(images.size()));
  ASSERT_TRUE(ids.ok()) << ids.status().message();
  EXPECT_EQ(*ids, p["input_ids"].get<std::vector<int>>());

  const auto want_ids = p["generated_ids"].get<std::vector<int>>();
  paligemma::GenerateOptions o;
  o.max_tokens = static_cast<int64_t>(want_ids.size());
  o.keep_logits = true;
  auto out = k.model->generate(images, prompt, o);
  ASSERT_TRUE(out.ok()) << out.status().message();
  EXPECT_EQ(out->ids, want_ids);
  EXPECT_EQ(out->text, p["generated_text"].get<std::string>());

  const int64_t V = k.model->info().vocab_size;
  const pg::TensorView& last = k.tensor(last_name);
  ASSERT_EQ(last.shape, (pg::Shape{V}));
  EXPECT_TRUE(close_and_report(k.dir.substr(k.dir.rfind('/') + 1) + " " + last_name,
                               k.f32(last_name), out->logits.data(), V, kLogitTol));

  const pg::TensorView& dec = k.tensor(decode_name);
  const int64_t steps = static_cast<int64_t>(out->ids.size());
  ASSERT_EQ(dec.shape, (pg::Shape{static_cast<int64_t>(want_ids.size()), V}));
  ASSERT_EQ(static_cast<int64_t>(out->logits.size()), steps * V);
  for (int64_t s = 0; s < std::min<int64_t>(steps, dec.shape[0]); ++s) {
    EXPECT_TRUE(all_close(k.f32(decode_name) + s * V, out->logits.data() + s * V, V, kLogitTol))
        << decode_name << " row " << s;
  }
  const int64_t rows = std::min<int64_t>(steps, dec.shape[0]);
  std::printf("[golden] %-40s max |err| = %.3g over %lld rows (tolerance %.3g)\n",
              (k.dir.substr(k.dir.rfind('/') + 1) + " " + decode_name).c_str(),
              pg::testing::max_abs_error(k.f32(decode_name), out->logits.data(), rows * V),
              static_cast<long long>(rows), kLogitTol);
}

TEST_P(GoldenTest, PromptsGreedyWithLogits) {
  Case& k = c();
  const json& prompts = k.expected["prompts"];
  ASSERT_FALSE(prompts.empty());
  for (size_t i = 0; i < prompts.size(); ++i) {
    check_prompt(k, prompts[i], {k.dir + "/image.png"}, "logits_last." + std::to_string(i),
                 "decode_logits." + std::to_string(i));
  }
}

TEST_P(GoldenTest, MultiImage) {
  Case& k = c();
  const json& m = k.expected["multi_image"];
  std::vector<std::string> images;
  for (const auto& name : m["images"]) images.push_back(k.dir + "/" + name.get<std::string>());
  check_prompt(k, m, images, "multi.logits_last", "multi.decode_logits");
}

TEST_P(GoldenTest, GreedyNeverEmitsIdsBeyondTokenizer) {
  Case& k = c();
  paligemma::GenerateOptions o;
  o.max_tokens = 8;
  o.greedy = false;
  o.temperature = 5.0f;  // flat distribution: every id is likely to come up
  o.seed = 7;
  auto out = k.model->generate({k.dir + "/image.png"}, "caption en", o);
  ASSERT_TRUE(out.ok()) << out.status().message();
  for (int id : out->ids) EXPECT_LT(id, k.model->info().tokenizer_vocab);
}

INSTANTIATE_TEST_SUITE_P(Golden, GoldenTest, ::testing::ValuesIn(pg::testing::golden_model_cases()),
                         [](const auto& info) {
                           std::string s = info.param;
                           for (char& ch : s)
                             if (!isalnum(static_cast<unsigned char>(ch))) ch = '_';
                           return s;
                         });

}  // namespace
