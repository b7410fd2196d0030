// The learning test: a synthetic dataset of coloured shapes (the suffix names the colour
// and the shape), full fine-tuning of the tiny PaliGemma through the public API, then
// greedy answers on held-out images from the saved checkpoint loaded by the engine.
#include <gtest/gtest.h>
#include <png.h>

#include <cmath>
#include <cstdint>
#include <filesystem>
#include <fstream>
#include <string>
#include <vector>

#include "paligemma/paligemma.h"
#include "paligemma/train.h"
#include "test_util.h"

namespace {

using pg::testing::TempDir;
using pg::testing::testdata;

// A portable generator (the same images on every platform).
struct Lcg {
  uint64_t s;
  double uniform(double lo, double hi) {
    s = s * 6364136223846793005ull + 1442695040888963407ull;
    return lo + (hi - lo) * static_cast<double>(s >> 11) / 9007199254740992.0;
  }
};

struct Colour {
  const char* name;
  uint8_t rgb[3];
};
const Colour kColours[] = {{"red", {220, 30, 30}},
                           {"green", {30, 200, 40}},
                           {"blue", {30, 60, 220}},
                           {"yellow", {230, 220, 30}}};
const char* kShapes[] = {"square", "circle", "triangle"};
constexpr int kSize = 56;  // the tiny model's image size

// A filled square, a ring, or a triangle pointing up, jittered in place and size
// (jitter 1: up to 3 pixels off centre, radius 15..19).
void draw(const Colour& c, const std::string& shape, Lcg& rng, double jitter,
          const std::string& path) {
  std::vector<uint8_t> px(kSize * kSize * 3, 235);
  const double cx = kSize / 2.0 + jitter * rng.uniform(-3, 3),
               cy = kSize / 2.0 + jitter * rng.uniform(-3, 3);
  const double r = 17 + jitter * rng.uniform(-2, 2);
  for (int y = 0; y < kSize; ++y) {
    for (int x = 0; x < kSize; ++x) {
      const double dx = x + 0.5 - cx, dy = y + 0.5 - cy, d2 = dx * dx + dy * dy;
      bool inside;
      if (shape == "square") {
        inside = std::fabs(dx) <= 0.85 * r && std::fabs(dy) <= 0.85 * r;
      } else if (shape == "circle") {
        inside = d2 <= r * r && d2 >= (r - 6) * (r - 6);
      } else {
        inside = dy <= 0.8 * r && dy >= -r && std::fabs(dx) <= (dy + r) * 0.45;
      }
      if (inside) {
        for (int k = 0; k < 3; ++k) px[(y * kSize + x) * 3 + k] = c.rgb[k];
      }
    }
  }
  png_image img{};
  img.version = PNG_IMAGE_VERSION;
  img.width = kSize;
  img.height = kSize;
  img.format = PNG_FORMAT_RGB;
  ASSERT_TRUE(png_image_write_to_file(&img, path.c_str(), 0, px.data(), 0, nullptr)) << path;
}

struct Item {
  std::string image, answer;
};

// per_combo images of every colour x shape into dir/data.jsonl.
std::vector<Item> make_dataset(const std::string& dir, int per_combo, uint64_t seed,
                               double jitter) {
  Lcg rng{seed};
  std::vector<Item> items;
  std::ofstream f(dir + "/data.jsonl");
  for (const Colour& c : kColours) {
    for (const char* s : kShapes) {
      for (int i = 0; i < per_combo; ++i) {
        const std::string name = std::string(c.name) + "_" + s + "_" + std::to_string(i) + ".png";
        draw(c, s, rng, jitter, dir + "/" + name);
        const std::string answer = std::string(c.name) + " " + s;
        f << "{\"image\": \"" << name << "\", \"prefix\": \"what is this\", \"suffix\": \""
          << answer << "\"}\n";
        items.push_back({dir + "/" + name, answer});
      }
    }
  }
  return items;
}

TEST(TrainLearningTest, ColouredShapes) {
  paligemma::set_threads(1);
  TempDir tmp;
  const std::string train_dir = tmp.file("train"), test_dir = tmp.file("test");
  std::filesystem::create_directories(train_dir);
  std::filesystem::create_directories(test_dir);
  // 192 training images; 12 held-out ones (other draws, jittered half as much: inside the
  // training distribution, none of them seen).
  make_dataset(train_dir, 16, 1, 1.0);
  const std::vector<Item> held_out = make_dataset(test_dir, 1, 2, 0.5);

  paligemma::TrainOptions o;
  o.model_dir = testdata("golden/tiny-pg1");
  o.data = train_dir + "/data.jsonl";
  o.out_dir = tmp.file("out");
  o.batch = 8;
  o.lr = 3e-3;
  o.warmup_steps = 10;
  o.distributed = false;
#if defined(__SANITIZE_ADDRESS__)
  o.steps = 30;  // the sanitizer build checks the code paths, not the learning
  const double min_factor = 3.0;
#else
  o.steps = 200;
  const double min_factor = 100.0;
#endif
  auto s = paligemma::train(o);
  ASSERT_TRUE(s.ok()) << s.status().message();
  std::printf("[learning] loss %.4f -> %.6f (factor %.0f) in %lld steps\n", s->first_loss,
              s->last_loss, s->first_loss / s->last_loss, static_cast<long long>(s->steps));
  EXPECT_GT(s->first_loss / s->last_loss, min_factor);

  auto model = paligemma::Model::load(o.out_dir);
  ASSERT_TRUE(model.ok()) << model.status().message();
  int correct = 0;
  for (const Item& it : held_out) {
    paligemma::GenerateOptions g;
    g.max_tokens = 8;
    auto out = model->generate({it.image}, "what is this", g);
    ASSERT_TRUE(out.ok()) << out.status().message();
    const bool ok = out->text == it.answer;
    correct += ok;
    if (!ok)
      std::printf("[learning] %s: want \"%s\", got \"%s\"\n", it.image.c_str(), it.answer.c_str(),
                  out->text.c_str());
  }
  std::printf("[learning] held-out exact match %d/%zu\n", correct, held_out.size());
#if !defined(__SANITIZE_ADDRESS__)
  EXPECT_EQ(correct, static_cast<int>(held_out.size()));
#endif
}

}  // namespace
