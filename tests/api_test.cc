// The public API on modified checkpoints: other key namings, dtypes and shardings load
// and agree; every kind of bad input gets a clear error that names what is wrong.
#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <zlib.h>

#include <algorithm>
#include <fstream>
#include <nlohmann/json.hpp>

#include "checkpoint_util.h"
#include "paligemma/bench.h"
#include "paligemma/paligemma.h"
#include "test_util.h"

namespace {

using pg::testing::copy_checkpoint;
using pg::testing::OwnedTensor;
using pg::testing::TempDir;
using pg::testing::testdata;
using ::testing::HasSubstr;

const std::string kPg1 = testdata("golden/tiny-pg1");
const std::string kPg2 = testdata("golden/tiny-pg2");

std::string read_all(const std::string& path) {
  std::ifstream f(path, std::ios::binary);
  return std::string((std::istreambuf_iterator<char>(f)), std::istreambuf_iterator<char>());
}
void write_all(const std::string& path, const std::string& bytes) {
  std::ofstream f(path, std::ios::binary);
  f << bytes;
}

paligemma::Generation greedy(const paligemma::Model& m, const std::string& image, int n = 4) {
  paligemma::GenerateOptions o;
  o.max_tokens = n;
  o.keep_logits = true;
  auto out = m.generate({image}, "caption en", o);
  EXPECT_TRUE(out.ok()) << out.status().message();
  return out.ok() ? std::move(out).value() : paligemma::Generation{};
}

std::string load_error(const std::string& dir) {
  auto m = paligemma::Model::load(dir);
  EXPECT_FALSE(m.ok());
  return m.ok() ? "" : m.status().message();
}

// ---- other layouts of the same weights ----

TEST(Loader, NewerTransformersKeyNamesGiveTheSameLogits) {
  TempDir tmp;
  copy_checkpoint(kPg1, tmp.path(), [](std::vector<OwnedTensor>& ts) {
    for (auto& t : ts) {
      if (t.name.rfind("language_model.model.", 0) == 0) {
        t.name = "model.language_model." + t.name.substr(21);
      } else {
        t.name = "model." + t.name;
      }
    }
    // Newer checkpoints may also store the tied head.
    OwnedTensor head = *pg::testing::find_tensor(ts, "model.language_model.embed_tokens.weight");
    head.name = "lm_head.weight";
    ts.push_back(head);
  });
  auto a = paligemma::Model::load(kPg1);
  auto b = paligemma::Model::load(tmp.path());
  ASSERT_TRUE(a.ok() && b.ok()) << b.status().message();
  EXPECT_TRUE(b->warnings().empty());
  const auto ga = greedy(*a, kPg1 + "/image.png"), gb = greedy(*b, kPg1 + "/image.png");
  EXPECT_EQ(ga.ids, gb.ids);
  EXPECT_EQ(ga.logits, gb.logits);
}

TEST(Loader, Float16AndBfloat16WeightsLoad) {
  for (pg::DType dt : {pg::DType::kF16, pg::DType::kBF16}) {
    TempDir tmp;
    copy_checkpoint(kPg1, tmp.path(), [dt](std::vector<OwnedTensor>& ts) {
      for (auto& t : ts) {
        const size_t n = t.bytes.size() / 4;
        std::vector<uint8_t> out(n * 2);
        for (size_t i = 0; i < n; ++i) {
          float f;
          std::memcpy(&f, t.bytes.data() + 4 * i, 4);
          const uint16_t h = dt == pg::DType::kF16 ? pg::f32_to_f16(f) : pg::f32_to_bf16(f);
          std::memcpy(out.data() + 2 * i, &h, 2);
        }
        t.bytes = out;
        t.dtype = dt;
      }
    });
    auto a = paligemma::Model::load(kPg1);
    auto b = paligemma::Model::load(tmp.path());
    ASSERT_TRUE(b.ok()) << b.status().message();
    const auto ga = greedy(*a, kPg1 + "/image.png", 1), gb = greedy(*b, kPg1 + "/image.png", 1);
    ASSERT_EQ(ga.logits.size(), gb.logits.size());
    // Rounded weights move the logits a little, not a lot.
    double max_diff = 0, max_abs = 0;
    for (size_t i = 0; i < ga.logits.size(); ++i) {
      max_diff = std::max(max_diff, std::fabs(double(ga.logits[i]) - gb.logits[i]));
      max_abs = std::max(max_abs, std::fabs(double(ga.logits[i])));
    }
    EXPECT_GT(max_diff, 0.0);
    EXPECT_LT(max_diff, 0.05 * max_abs) << pg::dtype_name(dt);
  }
}

TEST(Loader, ReshardedCheckpointGivesTheSameLogits) {
  TempDir tmp;
  copy_checkpoint(kPg1, tmp.path(), nullptr);
  std::filesystem::remove(tmp.file("model.safetensors"));
  auto ts = pg::testing::read_checkpoint(kPg1);
  std::vector<OwnedTensor> a, b;
  nlohmann::json index;
  for (size_t i = 0; i < ts.size(); ++i) {
    const bool first = i % 3 != 0;
    (first ? a : b).push_back(ts[i]);
    index["weight_map"][ts[i].name] =
        first ? "model-00001-of-00002.safetensors" : "model-00002-of-00002.safetensors";
  }
  pg::testing::write_tensors(tmp.file("model-00001-of-00002.safetensors"), a);
  pg::testing::write_tensors(tmp.file("model-00002-of-00002.safetensors"), b);
  write_all(tmp.file("model.safetensors.index.json"), index.dump());
  auto m1 = paligemma::Model::load(kPg1);
  auto m2 = paligemma::Model::load(tmp.path());
  ASSERT_TRUE(m2.ok()) << m2.status().message();
  EXPECT_EQ(greedy(*m1, kPg1 + "/image.png").logits, greedy(*m2, kPg1 + "/image.png").logits);
}

TEST(Loader, ExtraTensorIsNamedInAWarning) {
  TempDir tmp;
  copy_checkpoint(kPg1, tmp.path(), [](std::vector<OwnedTensor>& ts) {
    ts.push_back(
        {"vision_tower.vision_model.head.probe", pg::DType::kF32, {2}, std::vector<uint8_t>(8)});
  });
  auto m = paligemma::Model::load(tmp.path());
  ASSERT_TRUE(m.ok()) << m.status().message();
  ASSERT_EQ(m->warnings().size(), 1u);
  EXPECT_THAT(m->warnings()[0],
              HasSubstr("unexpected tensor 'vision_tower.vision_model.head.probe'"));
}

// ---- bad checkpoints ----

TEST(BadInput, MissingFolder) {
  EXPECT_THAT(load_error("/nonexistent/paligemma"), HasSubstr("/nonexistent/paligemma"));
}

TEST(BadInput, FolderWithoutWeights) {
  TempDir tmp;
  std::filesystem::copy_file(kPg1 + "/config.json", tmp.file("config.json"));
  EXPECT_THAT(load_error(tmp.path()),
              HasSubstr("no model.safetensors or model.safetensors.index.json"));
}

TEST(BadInput, MissingTokenizer) {
  TempDir tmp;
  copy_checkpoint(kPg1, tmp.path(), nullptr);
  std::filesystem::remove(tmp.file("tokenizer.model"));
  EXPECT_THAT(load_error(tmp.path()), HasSubstr("tokenizer.model: cannot open"));
}

TEST(BadInput, MalformedConfig) {
  TempDir tmp;
  copy_checkpoint(kPg1, tmp.path(), nullptr);
  write_all(tmp.file("config.json"), "{\"text_config\": {\"hidden_size\": 64,");
  EXPECT_THAT(load_error(tmp.path()), HasSubstr("config.json: not valid JSON"));
}

TEST(BadInput, TruncatedSafetensors) {
  TempDir tmp;
  copy_checkpoint(kPg1, tmp.path(), nullptr);
  const std::string bytes = read_all(tmp.file("model.safetensors"));
  write_all(tmp.file("model.safetensors"), bytes.substr(0, bytes.size() - 1000));
  const std::string msg = load_error(tmp.path());
  EXPECT_THAT(msg, HasSubstr("model.safetensors"));
  EXPECT_THAT(msg, HasSubstr("truncated"));
}

TEST(BadInput, HeaderThatLiesAboutOffsets) {
  TempDir tmp;
  copy_checkpoint(kPg1, tmp.path(), nullptr);
  std::string bytes = read_all(tmp.file("model.safetensors"));
  uint64_t n = 0;
  std::memcpy(&n, bytes.data(), 8);
  nlohmann::json header = nlohmann::json::parse(bytes.substr(8, n));
  auto& entry = header["language_model.model.norm.weight"];
  const uint64_t begin = entry["data_offsets"][0];
  entry["data_offsets"] = {begin + 1000000, begin + 1000000 + 64 * 4};
  std::string h = header.dump();
  ASSERT_LE(h.size(), n);
  h.resize(n, ' ');
  bytes.replace(8, n, h);
  write_all(tmp.file("model.safetensors"), bytes);
  EXPECT_THAT(load_error(tmp.path()), HasSubstr("language_model.model.norm.weight"));
}

TEST(BadInput, WrongShapedTensor) {
  TempDir tmp;
  copy_checkpoint(kPg1, tmp.path(), [](std::vector<OwnedTensor>& ts) {
    pg::testing::find_tensor(ts, "language_model.model.layers.0.mlp.gate_proj.weight")->shape = {
        64, 96};
  });
  EXPECT_THAT(
      load_error(tmp.path()),
      HasSubstr("tensor 'language_model.model.layers.0.mlp.gate_proj.weight' in " + tmp.path() +
                "/model.safetensors: expected shape [96, 64], found [64, 96]"));
}

TEST(BadInput, MissingTensor) {
  TempDir tmp;
  copy_checkpoint(kPg1, tmp.path(), [](std::vector<OwnedTensor>& ts) {
    ts.erase(std::remove_if(
                 ts.begin(), ts.end(),
                 [](const OwnedTensor& t) { return t.name == "language_model.model.norm.weight"; }),
             ts.end());
  });
  EXPECT_THAT(load_error(tmp.path()),
              HasSubstr("missing tensor 'language_model.model.norm.weight' (expected shape [64])"));
}

TEST(BadInput, IntegerTensor) {
  TempDir tmp;
  copy_checkpoint(kPg1, tmp.path(), [](std::vector<OwnedTensor>& ts) {
    pg::testing::find_tensor(ts, "language_model.model.norm.weight")->dtype = pg::DType::kI32;
  });
  EXPECT_THAT(load_error(tmp.path()), HasSubstr("dtype I32 is not a float type"));
}

TEST(BadInput, ConfigThatDisagreesWithTheWeights) {
  TempDir tmp;
  copy_checkpoint(kPg1, tmp.path(), nullptr);
  auto cfg = nlohmann::json::parse(read_all(tmp.file("config.json")));
  cfg["text_config"]["num_hidden_layers"] = 3;
  write_all(tmp.file("config.json"), cfg.dump());
  EXPECT_THAT(load_error(tmp.path()), HasSubstr("missing tensor 'language_model.model.layers.2."));
}

// ---- bad images and prompts ----

class BadRequest : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    auto m = paligemma::Model::load(kPg1);
    ASSERT_TRUE(m.ok()) << m.status().message();
    model_ = new paligemma::Model(std::move(m).value());
  }
  static void TearDownTestSuite() { delete model_; }
  std::string error_for(const std::vector<std::string>& images, const std::string& prompt) {
    paligemma::GenerateOptions o;
    o.max_tokens = 2;
    auto out = model_->generate(images, prompt, o);
    EXPECT_FALSE(out.ok());
    return out.ok() ? "" : out.status().message();
  }
  static paligemma::Model* model_;
  TempDir tmp_;
};
paligemma::Model* BadRequest::model_ = nullptr;

std::string png_header(uint32_t w, uint32_t h) {
  std::string s("\x89PNG\r\n\x1a\n", 8);
  std::string ihdr("IHDR", 4);
  auto be32 = [](std::string& o, uint32_t v) {
    for (int i = 3; i >= 0; --i) o.push_back(static_cast<char>((v >> (8 * i)) & 0xff));
  };
  be32(ihdr, w);
  be32(ihdr, h);
  ihdr += std::string("\x08\x02\x00\x00\x00", 5);  // 8-bit RGB
  be32(s, 13);
  s += ihdr;
  be32(s,
       static_cast<uint32_t>(crc32(0, reinterpret_cast<const Bytef*>(ihdr.data()), ihdr.size())));
  return s;
}

TEST_F(BadRequest, MissingImage) {
  EXPECT_THAT(error_for({"/nonexistent/cat.jpg"}, "caption en"), HasSubstr("/nonexistent/cat.jpg"));
}

TEST_F(BadRequest, NotAnImage) {
  EXPECT_THAT(error_for({kPg1 + "/config.json"}, "caption en"),
              HasSubstr("not a JPEG or PNG image"));
}

TEST_F(BadRequest, TruncatedJpeg) {
  const std::string jpg = read_all(kPg1 + "/image.jpg");
  write_all(tmp_.file("cut.jpg"), jpg.substr(0, jpg.size() / 2));
  EXPECT_THAT(error_for({tmp_.file("cut.jpg")}, "caption en"), HasSubstr(tmp_.file("cut.jpg")));
}

TEST_F(BadRequest, ZeroSizedImage) {
  write_all(tmp_.file("zero.png"), png_header(0, 0));
  EXPECT_THAT(error_for({tmp_.file("zero.png")}, "caption en"), HasSubstr("zero width or height"));
}

TEST_F(BadRequest, DecompressionBomb) {
  write_all(tmp_.file("huge.png"), png_header(40000, 40000));
  EXPECT_THAT(error_for({tmp_.file("huge.png")}, "caption en"), HasSubstr("40000"));
}

TEST_F(BadRequest, EmptyPrompt) {
  EXPECT_THAT(error_for({kPg1 + "/image.png"}, ""), HasSubstr("the prompt is empty"));
}

TEST_F(BadRequest, PromptLongerThanTheContext) {
  std::string prompt;
  for (int i = 0; i < 9000; ++i) prompt += "a ";
  EXPECT_THAT(error_for({kPg1 + "/image.png"}, prompt),
              HasSubstr("which leaves no room in the context of 8192 tokens"));
}

TEST_F(BadRequest, BadSamplingSettings) {
  paligemma::GenerateOptions o;
  o.greedy = false;
  o.top_p = 0.0f;
  auto out = model_->generate({kPg1 + "/image.png"}, "caption en", o);
  ASSERT_FALSE(out.ok());
  EXPECT_THAT(out.status().message(), HasSubstr("top_p must be in (0, 1]"));
}

TEST(Generation, StopsAtTheContextLength) {
  TempDir tmp;
  copy_checkpoint(kPg1, tmp.path(), nullptr);
  auto cfg = nlohmann::json::parse(read_all(tmp.file("config.json")));
  cfg["text_config"]["max_position_embeddings"] = 24;  // 16 image + 5 prompt tokens: room for 3
  write_all(tmp.file("config.json"), cfg.dump());
  auto m = paligemma::Model::load(tmp.path());
  ASSERT_TRUE(m.ok()) << m.status().message();
  paligemma::GenerateOptions o;
  o.max_tokens = 10;
  auto out = m->generate({kPg1 + "/image.png"}, "caption en", o);
  ASSERT_TRUE(out.ok()) << out.status().message();
  EXPECT_EQ(out->stop_reason, "context");
  EXPECT_EQ(out->prompt_tokens + static_cast<int64_t>(out->ids.size()), 24 + 1);
}

TEST(Generation, StreamedTextEqualsTheResultAndCanStopEarly) {
  auto m = paligemma::Model::load(kPg2);
  ASSERT_TRUE(m.ok()) << m.status().message();
  paligemma::GenerateOptions o;
  o.max_tokens = 6;
  std::string streamed;
  auto out = m->generate({kPg2 + "/image.png"}, "caption en", o, [&](std::string_view s) {
    streamed += s;
    return true;
  });
  ASSERT_TRUE(out.ok()) << out.status().message();
  EXPECT_EQ(streamed, out->text);
  int calls = 0;
  auto stopped = m->generate({kPg2 + "/image.png"}, "caption en", o,
                             [&](std::string_view) { return ++calls < 2; });
  ASSERT_TRUE(stopped.ok());
  EXPECT_EQ(stopped->stop_reason, "stopped");
  EXPECT_EQ(stopped->ids.size(), 2u);
}

TEST(Generation, SamplingIsReproducibleWithASeed) {
  auto m = paligemma::Model::load(kPg1);
  ASSERT_TRUE(m.ok());
  paligemma::GenerateOptions o;
  o.greedy = false;
  o.temperature = 1.5f;
  o.top_k = 50;
  o.top_p = 0.95f;
  o.seed = 1234;
  o.max_tokens = 8;
  auto a = m->generate({kPg1 + "/image.png"}, "caption en", o);
  auto b = m->generate({kPg1 + "/image.png"}, "caption en", o);
  ASSERT_TRUE(a.ok() && b.ok());
  EXPECT_EQ(a->ids, b->ids);
}

TEST(Generation, EncodedBytesEqualFiles) {
  auto m = paligemma::Model::load(kPg1);
  ASSERT_TRUE(m.ok());
  paligemma::GenerateOptions o;
  o.max_tokens = 3;
  o.keep_logits = true;
  auto a = m->generate({kPg1 + "/image.jpg"}, "caption en", o);
  auto b = m->generate_from_bytes({read_all(kPg1 + "/image.jpg")}, "caption en", o);
  ASSERT_TRUE(a.ok() && b.ok());
  EXPECT_EQ(a->logits, b->logits);
}

}  // namespace

namespace {
TEST(Bench, RefusesBadCountsWithTheirNames) {
  paligemma::BenchOptions o;
  o.preset = "tiny-pg1";
  o.probe = false;
  o.warmup = -1;
  auto r = paligemma::run_bench(o);
  ASSERT_FALSE(r.ok());
  EXPECT_THAT(r.status().message(), HasSubstr("--warmup must be >= 0"));
  o.warmup = 0;
  o.decode_tokens = -1;
  r = paligemma::run_bench(o);
  ASSERT_FALSE(r.ok());
  EXPECT_THAT(r.status().message(), HasSubstr("token counts must be >= 0"));
  o.decode_tokens = 2;
  o.repeat = 0;
  r = paligemma::run_bench(o);
  ASSERT_FALSE(r.ok());
  EXPECT_THAT(r.status().message(), HasSubstr("--repeat must be >= 1"));
  o.repeat = 1;  // and a good one runs, its cold figures the timed ones
  r = paligemma::run_bench(o);
  ASSERT_TRUE(r.ok()) << r.status().message();
  EXPECT_EQ(r->cold_ttft_s, r->ttft_s);
  ASSERT_EQ(r->ttft_runs_s.size(), 1u);
  EXPECT_EQ(r->ttft_runs_s[0], r->ttft_s);
}

TEST(Bench, ReportsTheMedianOfTheTimedPasses) {
  paligemma::BenchOptions o;
  o.preset = "tiny-pg1";
  o.probe = false;
  o.decode_tokens = 2;
  for (const int64_t repeat : {3, 4}) {
    o.repeat = repeat;
    auto r = paligemma::run_bench(o);
    ASSERT_TRUE(r.ok()) << r.status().message();
    ASSERT_EQ(r->ttft_runs_s.size(), static_cast<size_t>(repeat));
    ASSERT_EQ(r->vision_runs_s.size(), static_cast<size_t>(repeat));
    for (size_t i = 0; i < r->ttft_runs_s.size(); ++i) {
      EXPECT_GT(r->ttft_runs_s[i], 0);
      EXPECT_GE(r->ttft_runs_s[i], r->vision_runs_s[i]);
    }
    // As many passes at or below the median as at or above it; an even count's the mean
    // of the middle two.
    std::vector<double> t = r->ttft_runs_s, v = r->vision_runs_s;
    std::sort(t.begin(), t.end());
    std::sort(v.begin(), v.end());
    const size_t n = t.size();
    const double tm = n % 2 == 1 ? t[n / 2] : 0.5 * (t[n / 2 - 1] + t[n / 2]);
    const double vm = n % 2 == 1 ? v[n / 2] : 0.5 * (v[n / 2 - 1] + v[n / 2]);
    EXPECT_EQ(r->ttft_s, tm) << repeat;
    EXPECT_EQ(r->vision_s, vm) << repeat;
    EXPECT_GT(r->decode_tok_s, 0);
  }
}

TEST(Bench, WarnsWhereTheFractionsCannotBeTrusted) {
  paligemma::BenchResult r;
  r.ttft_s = 2.0, r.roofline_ttft_s = 1.5, r.cold_ttft_s = 2.2;
  r.decode_tok_s = 9.0, r.roofline_decode_tok_s = 10.0;
  EXPECT_THAT(paligemma::roofline_warnings(r), ::testing::IsEmpty());  // 75%, 90%: plausible
  r.roofline_ttft_s = 2.1;  // a first token faster than its limit: 105%
  r.decode_tok_s = 10.4;    // 104%
  auto w = paligemma::roofline_warnings(r);
  ASSERT_EQ(w.size(), 2u);
  EXPECT_THAT(w[0], HasSubstr("the first token ran at 105% of its roofline"));
  EXPECT_THAT(w[1], HasSubstr("decode ran at 104% of its roofline"));
  EXPECT_THAT(w[1], HasSubstr("rerun on an idle machine"));
  r.roofline_ttft_s = 1.5, r.decode_tok_s = 9.0;
  r.ttft_s = 8.09, r.cold_ttft_s = 4.70;  // the timed pass disturbed (a run of this machine)
  w = paligemma::roofline_warnings(r);
  ASSERT_EQ(w.size(), 1u);
  EXPECT_THAT(w[0], HasSubstr("over 1.25 times the cold pass (8.09 s against 4.70 s)"));
  r.ttft_s = 5.8;  // 1.23 times: within what a busy moment gives
  EXPECT_THAT(paligemma::roofline_warnings(r), ::testing::IsEmpty());
  r.roofline_ttft_s = 0, r.roofline_decode_tok_s = 0, r.ttft_s = 2, r.cold_ttft_s = 2;  // no probe
  EXPECT_THAT(paligemma::roofline_warnings(r), ::testing::IsEmpty());
}
}  // namespace
