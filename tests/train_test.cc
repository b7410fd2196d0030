// The training layer: optimiser, schedule, clipping, data order and parsing, batches of
// different lengths, what each --train mode trains (and that frozen parts carry no
// gradients or optimiser state), LoRA, activation recomputation, position-embedding
// resampling, and save -> load round trips with identical logits.
#include <gtest/gtest.h>

#include <cmath>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <map>
#include <memory>
#include <set>

#include "base/parallel.h"
#include "image/image.h"
#include "io/safetensors.h"
#include "model/paligemma.h"
#include "runtime/session.h"
#include "test_util.h"
#include "text/prompt.h"
#include "train/adamw.h"
#include "train/data.h"
#include "train/example.h"
#include "train/inference.h"
#include "train/params.h"
#include "train/trainer.h"

namespace pg::train {
namespace {

using pg::testing::testdata;

// One thread: the results do not depend on it, and ctest runs test binaries side by side.
const bool kOneThread = (pg::set_num_threads(1), true);
using pg::testing::TempDir;
namespace fs = std::filesystem;

runtime::Session& session(const std::string& name) {
  static std::map<std::string, std::unique_ptr<runtime::Session>> cache;
  auto& s = cache[name];
  if (!s) {
    auto r = runtime::Session::load(testdata("golden/" + name), nullptr);
    EXPECT_TRUE(r.ok()) << r.status().message();
    s = std::move(r).value();
  }
  return *s;
}

std::unique_ptr<ModelParams> make_params(const std::string& name, const Selection& sel,
                                         int64_t image_size = 0) {
  auto p = ModelParams::create(session(name).model(), image_size);
  EXPECT_TRUE(p.ok()) << p.status().message();
  auto st = (*p)->select(sel);
  EXPECT_TRUE(st.ok()) << st.message();
  return std::move(p).value();
}

Example make_example(const std::string& name, const ModelParams& p, const std::string& suffix,
                     const std::string& image = "image.png") {
  ExampleBuilder b(session(name).tokenizer(), p.config());
  auto ex = b.build({testdata("golden/" + name + "/" + image)}, "caption en", suffix);
  EXPECT_TRUE(ex.ok()) << ex.status().message();
  return std::move(ex).value();
}

Selection mode(TrainMode m, bool freeze_vision = false) {
  Selection s;
  s.mode = m;
  s.freeze_vision = freeze_vision;
  s.lora_rank = 4;
  s.lora_alpha = 8.0f;
  s.seed = 3;
  return s;
}

// Max |a - b| relative to max |a|.
double rel_diff(const float* a, const float* b, int64_t n) {
  double m = 0, e = 0;
  for (int64_t i = 0; i < n; ++i) {
    m = std::max(m, std::fabs(static_cast<double>(a[i])));
    e = std::max(e, std::fabs(static_cast<double>(a[i]) - b[i]));
  }
  return m > 0 ? e / m : e;
}

std::map<std::string, std::vector<float>> snapshot_grads(const ModelParams& p) {
  std::map<std::string, std::vector<float>> out;
  for (Param* q : p.trainable()) out[q->name].assign(q->grad.data(), q->grad.data() + q->numel());
  return out;
}

// A data file of the golden images with answers of different lengths.
std::string write_data(const TempDir& dir, const std::string& name, int copies = 1) {
  const std::vector<std::pair<std::string, std::string>> rows = {
      {"image.png", "a red square"},
      {"image2.png", "a blue circle and a green triangle"},
      {"image.jpg", "red"}};
  for (const auto& [img, _] : rows)
    fs::copy_file(testdata("golden/" + name + "/" + img), dir.file(img),
                  fs::copy_options::overwrite_existing);
  std::ofstream f(dir.file("data.jsonl"));
  for (int c = 0; c < copies; ++c) {
    for (const auto& [img, suffix] : rows) {
      f << "{\"image\": \"" << img << "\", \"prefix\": \"caption en\", \"suffix\": \"" << suffix
        << "\"}\n";
    }
  }
  return dir.file("data.jsonl");
}

// ---- optimiser ----

TEST(AdamWTest, MatchesPyTorchFormula) {
  Param p;
  p.name = "w";
  p.shape = {5};
  p.decay = true;
  p.trainable = true;
  p.value = Tensor({5});
  p.grad = Tensor({5});
  const double lr = 0.01, b1 = 0.9, b2 = 0.99, eps = 1e-8, wd = 0.1;
  std::vector<double> w = {0.5, -1.0, 2.0, 0.0, -0.25}, m(5, 0.0), v(5, 0.0);
  for (int i = 0; i < 5; ++i) p.value.data()[i] = static_cast<float>(w[i]);
  AdamW opt({&p}, AdamWConfig{b1, b2, eps, wd});
  for (int t = 1; t <= 3; ++t) {
    for (int i = 0; i < 5; ++i) {
      const double g = 0.1 * (i + 1) * (t % 2 ? 1 : -1);
      p.grad.data()[i] = static_cast<float>(g);
      w[i] *= 1 - lr * wd;
      m[i] = b1 * m[i] + (1 - b1) * g;
      v[i] = b2 * v[i] + (1 - b2) * g * g;
      const double mhat = m[i] / (1 - std::pow(b1, t)), vhat = v[i] / (1 - std::pow(b2, t));
      w[i] -= lr * mhat / (std::sqrt(vhat) + eps);
    }
    opt.step(lr);
    for (int i = 0; i < 5; ++i)
      EXPECT_NEAR(p.value.data()[i], w[i], 1e-6) << "step " << t << " index " << i;
  }
  EXPECT_EQ(opt.steps(), 3);
}

TEST(AdamWTest, ScheduleWarmupThenCosine) {
  const Schedule s{1e-3, 1e-5, 4, 20};
  EXPECT_DOUBLE_EQ(s.at(0), 1e-3 / 4);
  EXPECT_DOUBLE_EQ(s.at(3), 1e-3);
  EXPECT_DOUBLE_EQ(s.at(4), 1e-3);  // cosine starts at the peak
  for (int64_t i = 5; i < 20; ++i) EXPECT_LT(s.at(i), s.at(i - 1)) << i;
  EXPECT_NEAR(s.at(19), 1e-5, 2e-5);
  EXPECT_GE(s.at(19), 1e-5);
  EXPECT_DOUBLE_EQ((Schedule{2.0, 0.0, 0, 10}.at(0)), 2.0);
}

TEST(AdamWTest, ClipByGlobalNorm) {
  Param a, b;
  for (Param* p : {&a, &b}) {
    p->shape = {2};
    p->grad = Tensor({2});
  }
  a.grad.data()[0] = 3;
  b.grad.data()[1] = 4;
  EXPECT_DOUBLE_EQ(clip_grad_norm({&a, &b}, 10.0), 5.0);  // under the limit: unchanged
  EXPECT_FLOAT_EQ(a.grad.data()[0], 3.0f);
  EXPECT_DOUBLE_EQ(clip_grad_norm({&a, &b}, 1.0), 5.0);
  EXPECT_NEAR(global_grad_norm({&a, &b}), 1.0, 1e-6);
}

// ---- data ----

TEST(DataTest, OrderIsASeededPermutationPerEpoch) {
  Order a(7, 1, true), b(7, 1, true), c(7, 2, true), plain(7, 0, false);
  std::vector<int64_t> ea, ec;
  for (int64_t k = 0; k < 21; ++k) {
    EXPECT_EQ(a.at(k), b.at(k));
    EXPECT_EQ(plain.at(k), k % 7);
    if (k < 7) ea.push_back(a.at(k));
    if (k < 7) ec.push_back(c.at(k));
  }
  EXPECT_EQ(std::set<int64_t>(ea.begin(), ea.end()).size(), 7u);
  EXPECT_NE(ea, ec);
  std::vector<int64_t> e1;
  for (int64_t k = 7; k < 14; ++k) e1.push_back(a.at(k));
  EXPECT_NE(ea, e1);          // reshuffled every epoch
  EXPECT_EQ(a.at(3), ea[3]);  // going back recomputes the same epoch
}

TEST(DataTest, JsonlErrorsNameTheLine) {
  TempDir d;
  fs::copy_file(testdata("golden/tiny-pg1/image.png"), d.file("a.png"));
  auto write = [&](const std::string& text) {
    std::ofstream(d.file("x.jsonl")) << text;
    return read_jsonl(d.file("x.jsonl"));
  };
  auto ok = write(
      "{\"image\": \"a.png\", \"prefix\": \"p\", \"suffix\": \"s\"}\n\n"
      "{\"image\": [\"a.png\", \"a.png\"], \"prefix\": \"p\", \"suffix\": \"t\"}\n");
  ASSERT_TRUE(ok.ok()) << ok.status().message();
  ASSERT_EQ(ok->size(), 2u);
  EXPECT_EQ((*ok)[0].images[0], d.file("a.png"));  // relative to the file
  EXPECT_EQ((*ok)[1].images.size(), 2u);
  EXPECT_EQ((*ok)[1].line, 3);
  auto bad = write("{\"image\": \"a.png\", \"prefix\": \"p\", \"suffix\": \"s\"}\n{oops\n");
  ASSERT_FALSE(bad.ok());
  EXPECT_NE(bad.status().message().find("x.jsonl:2"), std::string::npos) << bad.status().message();
  auto no_suffix = write("{\"image\": \"a.png\", \"prefix\": \"p\"}\n");
  ASSERT_FALSE(no_suffix.ok());
  EXPECT_NE(no_suffix.status().message().find("\"suffix\""), std::string::npos);

  auto p = make_params("tiny-pg1", mode(TrainMode::kFull));
  ExampleBuilder b(session("tiny-pg1").tokenizer(), p->config());
  std::ofstream(d.file("y.jsonl"))
      << "{\"image\": \"missing.png\", \"prefix\": \"p\", \"suffix\": \"s\"}\n";
  auto missing = Dataset::load(d.file("y.jsonl"), b);
  ASSERT_FALSE(missing.ok());
  EXPECT_NE(missing.status().message().find("missing.png"), std::string::npos)
      << missing.status().message();
}

TEST(DataTest, ImagesAreDecodedOncePerExample) {
  TempDir d;
  const std::string data = write_data(d, "tiny-pg1");
  auto p = make_params("tiny-pg1", mode(TrainMode::kFull));
  ExampleBuilder b(session("tiny-pg1").tokenizer(), p->config());
  auto ds = Dataset::load(data, b);
  ASSERT_TRUE(ds.ok()) << ds.status().message();
  for (int r = 0; r < 3; ++r) {
    for (int64_t i = 0; i < ds->size(); ++i) ASSERT_TRUE(ds->get(i).ok());
  }
  EXPECT_EQ(ds->images_decoded(), 3);
  // The cached pixels equal a fresh decode.
  auto ex = ds->get(0);
  Example fresh = make_example("tiny-pg1", *p, "a red square");
  ASSERT_EQ(ex->pixels[0].numel(), fresh.pixels[0].numel());
  EXPECT_EQ(std::memcmp(ex->pixels[0].data(), fresh.pixels[0].data(),
                        sizeof(float) * fresh.pixels[0].numel()),
            0);
  EXPECT_EQ(ex->ids, fresh.ids);
}

// ---- gradients ----

// Examples of different lengths in one batch = the token-weighted sum of each alone: the
// batch needs no padding, so nothing of it can leak into attention or the loss.
TEST(GradTest, BatchOfDifferentLengthsIsTheSumOfItsExamples) {
  auto p = make_params("tiny-pg2", mode(TrainMode::kFull));
  const Example a = make_example("tiny-pg2", *p, "a red square");
  const Example b =
      make_example("tiny-pg2", *p, "a blue circle and a green triangle", "image2.png");
  ASSERT_NE(a.ids.size(), b.ids.size());
  const int64_t n = a.loss_tokens() + b.loss_tokens();
  const float scale = 1.0f / static_cast<float>(n);
  p->zero_grads();
  const double nll =
      example_backward(*p, a, scale, {}).nll + example_backward(*p, b, scale, {}).nll;
  auto batch = snapshot_grads(*p);
  p->zero_grads();
  const double nll_a = example_backward(*p, a, scale, {}).nll;
  auto ga = snapshot_grads(*p);
  p->zero_grads();
  const double nll_b = example_backward(*p, b, scale, {}).nll;
  EXPECT_NEAR(nll, nll_a + nll_b, 1e-9 * nll);
  EXPECT_NEAR(nll / n, (example_loss(*p, a).nll + example_loss(*p, b).nll) / n, 1e-6);
  double worst = 0;
  for (Param* q : p->trainable()) {
    std::vector<float> sum(static_cast<size_t>(q->numel()));
    for (int64_t i = 0; i < q->numel(); ++i) sum[i] = ga[q->name].data()[i] + q->grad.data()[i];
    worst = std::max(worst, rel_diff(batch[q->name].data(), sum.data(), q->numel()));
  }
  EXPECT_LT(worst, 1e-5);
}

// Each mode's trained tensors get exactly the gradient full training gives them; frozen
// tensors hold neither a gradient, a float32 master nor optimiser state.
TEST(GradTest, ModesTrainTheirTensorsOnly) {
  for (const std::string name : {"tiny-pg1", "tiny-pg2"}) {
    auto full = make_params(name, mode(TrainMode::kFull));
    const Example ex = make_example(name, *full, "a red square");
    full->zero_grads();
    example_backward(*full, ex, 0.25f, {});
    for (const auto& [sel, label] : {std::pair{mode(TrainMode::kAttention), "attention"},
                                     std::pair{mode(TrainMode::kFull, true), "freeze-vision"}}) {
      auto p = make_params(name, sel);
      p->zero_grads();
      example_backward(*p, ex, 0.25f, {});
      int64_t trained = 0;
      for (Param* q : p->all()) {
        const bool attn =
            q->name.find("language_model") == 0 && q->name.find("self_attn") != std::string::npos;
        const bool vision = q->name.find("vision_tower") == 0;
        const bool want = std::string(label) == "attention" ? attn : !vision;
        EXPECT_EQ(q->trainable, want) << label << " " << q->name;
        if (!q->trainable) {
          EXPECT_EQ(q->grad.numel(), 0) << q->name;
          if (q->matrix) {
            EXPECT_EQ(q->value.numel(), 0) << q->name << " has a float32 copy";
          }
          continue;
        }
        ++trained;
        Param* f = full->find(q->name);
        EXPECT_LT(rel_diff(f->grad.data(), q->grad.data(), q->numel()), 1e-5)
            << label << " " << q->name;
      }
      EXPECT_EQ(static_cast<int64_t>(p->trainable().size()), trained);
      AdamW opt(p->trainable(), {});
      EXPECT_EQ(opt.params().size(), static_cast<size_t>(trained))
          << "optimiser state only for trained tensors";
    }
  }
}

// With B = 0 at the start, dA = 0 and dB = scale * dW A^T (dW: the full gradient of W).
TEST(GradTest, LoraGradientsFollowFromTheFullGradient) {
  auto full = make_params("tiny-pg2", mode(TrainMode::kFull));
  auto lora = make_params("tiny-pg2", mode(TrainMode::kLora));
  const Example ex = make_example("tiny-pg2", *full, "a red square");
  full->zero_grads();
  lora->zero_grads();
  example_backward(*full, ex, 0.25f, {});
  example_backward(*lora, ex, 0.25f, {});
  EXPECT_EQ(lora->adapters().size(), 7u * lora->text.layers.size());
  for (Param* q : lora->all()) EXPECT_FALSE(q->trainable) << q->name;
  for (const auto& a : lora->adapters()) {
    const std::string base =
        a->a.name.substr(0, a->a.name.size() - std::string(".lora_A.weight").size()) + ".weight";
    const Param* w = full->find(base);
    ASSERT_NE(w, nullptr) << base;
    const int64_t r = a->a.shape[0], in = a->a.shape[1], out = a->b.shape[0];
    for (int64_t i = 0; i < a->a.numel(); ++i) ASSERT_EQ(a->a.grad.data()[i], 0.0f) << a->a.name;
    std::vector<float> want(static_cast<size_t>(out * r), 0.0f);
    for (int64_t o = 0; o < out; ++o) {
      for (int64_t k = 0; k < r; ++k) {
        double s = 0;
        for (int64_t j = 0; j < in; ++j)
          s += double(w->grad.data()[o * in + j]) * a->a.data()[k * in + j];
        want[static_cast<size_t>(o * r + k)] = static_cast<float>(a->scale * s);
      }
    }
    EXPECT_LT(rel_diff(want.data(), a->b.grad.data(), out * r), 1e-4) << a->b.name;
  }
}

TEST(GradTest, RecomputationGivesIdenticalGradients) {
  auto a = make_params("tiny-pg2", mode(TrainMode::kFull));
  auto b = make_params("tiny-pg2", mode(TrainMode::kFull));
  const Example ex = make_example("tiny-pg2", *a, "a red square");
  a->zero_grads();
  b->zero_grads();
  const double la = example_backward(*a, ex, 0.5f, ForwardOptions{false}).nll;
  const double lb = example_backward(*b, ex, 0.5f, ForwardOptions{true}).nll;
  EXPECT_EQ(la, lb);
  for (Param* q : a->trainable()) {
    EXPECT_EQ(
        std::memcmp(q->grad.data(), b->find(q->name)->grad.data(), sizeof(float) * q->numel()), 0)
        << q->name;
  }
}

// ---- resolution ----

TEST(ResolutionTest, BilinearResampleOfPositionEmbeddings) {
  Tensor pos({4, 2});  // 2x2 grid, 2 channels: channel 0 = x, channel 1 = constant
  for (int64_t i = 0; i < 4; ++i) {
    pos.data()[i * 2] = static_cast<float>(i % 2);
    pos.data()[i * 2 + 1] = 7.0f;
  }
  Tensor same = resample_position_embedding(pos, 2, 2);
  EXPECT_EQ(std::memcmp(same.data(), pos.data(), sizeof(float) * 8), 0);
  Tensor up = resample_position_embedding(pos, 2, 4);
  ASSERT_EQ(up.shape(), (Shape{16, 2}));
  // Half-pixel centres: output x = 0..3 sample source x = -0.25, 0.25, 0.75, 1.25 (clamped).
  const float want[4] = {0.0f, 0.25f, 0.75f, 1.0f};
  for (int64_t y = 0; y < 4; ++y) {
    for (int64_t x = 0; x < 4; ++x) {
      EXPECT_FLOAT_EQ(up.row(y * 4 + x)[0], want[x]);
      EXPECT_FLOAT_EQ(up.row(y * 4 + x)[1], 7.0f);
    }
  }
}

// ---- checkpoints ----

// Logits of the engine's inference path for a prompt (last position).
std::vector<float> engine_logits(const model::PaliGemma& m, const runtime::Session& s,
                                 const std::string& image) {
  auto img = image::load_image(image);
  EXPECT_TRUE(img.ok());
  auto px = image::preprocess(*img, static_cast<int>(m.config().vision.image_size));
  EXPECT_TRUE(px.ok());
  std::vector<Tensor> pixels;
  pixels.push_back(std::move(px).value());
  Tensor f = m.image_features(pixels);
  auto ids = text::build_prompt(s.tokenizer(), "caption en", m.config().num_image_tokens(), 1,
                                static_cast<int>(m.config().image_token_index));
  EXPECT_TRUE(ids.ok());
  model::KvCache cache = m.new_cache(static_cast<int64_t>(ids->ids.size()));
  Tensor h = m.forward(ids->ids, &f, cache, ids->prefix_len);
  Tensor l = m.logits(h.row(h.dim(0) - 1), 1);
  return std::vector<float>(l.data(), l.data() + l.numel());
}

struct RoundTrip {
  std::string model;
  std::string mode;
  int64_t image_size;
};

class RoundTripTest : public ::testing::TestWithParam<RoundTrip> {};

// Train a few steps, save, reload with the engine: the same logits, bit for bit, as the
// engine computes over the in-memory parameters; trained tensors saved exactly (float32),
// frozen ones as stored; the config carries a new image size.
TEST_P(RoundTripTest, SavedCheckpointReloadsWithIdenticalLogits) {
  const RoundTrip& rt = GetParam();
  TempDir d;
  TrainConfig c;
  c.data = write_data(d, rt.model);
  c.out_dir = d.file("out");
  c.mode = rt.mode;
  c.lora_rank = 4;
  c.steps = 3;
  c.batch = 2;
  c.lr = 1e-2;
  c.image_size = rt.image_size;
  c.distributed = false;
  const std::string src = testdata("golden/" + rt.model);
  std::unique_ptr<ModelParams> params;
  auto r = run_training_on(session(rt.model).model(), session(rt.model).tokenizer(), src, c,
                           nullptr, &params);
  ASSERT_TRUE(r.ok()) << r.status().message();
  EXPECT_EQ(r->steps, 3);

  auto reloaded = model::PaliGemma::load(c.out_dir, nullptr);
  ASSERT_TRUE(reloaded.ok()) << reloaded.status().message();
  const int64_t size = rt.image_size > 0 ? rt.image_size : 56;
  EXPECT_EQ((*reloaded)->config().vision.image_size, size);
  auto in_memory = inference_model(*params);
  const std::vector<float> want = engine_logits(*in_memory, session(rt.model), src + "/image.png");
  const std::vector<float> got = engine_logits(**reloaded, session(rt.model), src + "/image.png");
  ASSERT_EQ(want.size(), got.size());
  EXPECT_EQ(std::memcmp(want.data(), got.data(), sizeof(float) * want.size()), 0)
      << "logits differ";

  auto file = io::SafetensorsFile::open(c.out_dir + "/model.safetensors");
  ASSERT_TRUE(file.ok()) << file.status().message();
  EXPECT_EQ(file->metadata().at("format"), "pt");
  for (const Param* p : params->all()) {
    auto it = file->tensors().find(p->name);
    ASSERT_NE(it, file->tensors().end()) << p->name;
    EXPECT_EQ(it->second.shape, p->shape) << p->name;
    if (p->trainable) {
      ASSERT_EQ(it->second.dtype, DType::kF32) << p->name;
      EXPECT_EQ(std::memcmp(it->second.data, p->data(), sizeof(float) * p->numel()), 0) << p->name;
    } else if (p->matrix && rt.mode != "lora") {
      EXPECT_EQ(it->second.dtype, p->stored_dtype)
          << p->name << ": frozen tensors keep their dtype";
    }
  }
  EXPECT_TRUE(fs::exists(c.out_dir + "/tokenizer.model"));
  EXPECT_TRUE(fs::exists(c.out_dir + "/train_state.safetensors"));
}

INSTANTIATE_TEST_SUITE_P(Train, RoundTripTest,
                         ::testing::Values(RoundTrip{"tiny-pg1", "full", 0},
                                           RoundTrip{"tiny-pg2", "attention", 0},
                                           RoundTrip{"tiny-pg2", "lora", 0},
                                           RoundTrip{"tiny-pg1", "full", 112}),
                         [](const auto& info) {
                           std::string s = info.param.model + "_" + info.param.mode + "_" +
                                           std::to_string(info.param.image_size);
                           for (char& ch : s)
                             if (!isalnum(static_cast<unsigned char>(ch))) ch = '_';
                           return s;
                         });

// Batch 2 in one micro-batch and batch 1 accumulated over two give the same step.
TEST(TrainLoopTest, AccumulationEqualsALargerBatch) {
  TempDir d;
  TrainConfig c;
  c.data = write_data(d, "tiny-pg1", 2);
  c.steps = 3;
  c.lr = 1e-2;
  c.distributed = false;
  auto run = [&](int64_t batch, int64_t accum) {
    c.batch = batch;
    c.grad_accum = accum;
    std::unique_ptr<ModelParams> p;
    auto r = run_training_on(session("tiny-pg1").model(), session("tiny-pg1").tokenizer(), "", c,
                             nullptr, &p);
    EXPECT_TRUE(r.ok()) << r.status().message();
    return p;
  };
  auto a = run(2, 1), b = run(1, 2);
  for (Param* q : a->trainable()) {
    EXPECT_EQ(std::memcmp(q->data(), b->find(q->name)->data(), sizeof(float) * q->numel()), 0)
        << q->name;
  }
}

}  // namespace
}  // namespace pg::train
