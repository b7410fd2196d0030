// Pictures of results (cairo): what changes and what does not, decoded from the PNG written.
#include "tasks/draw.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include "image/image.h"
#include "test_util.h"

namespace {

using pg::testing::TempDir;
using ::testing::HasSubstr;

pg::image::Image grey(int w, int h, uint8_t v = 128) {
  pg::image::Image img;
  img.width = w;
  img.height = h;
  img.rgb.assign(static_cast<size_t>(w) * h * 3, v);
  return img;
}

const uint8_t* px(const pg::image::Image& img, int x, int y) {
  return &img.rgb[(static_cast<size_t>(y) * img.width + x) * 3];
}

bool same(const pg::image::Image& a, const pg::image::Image& b, int x, int y) {
  return std::equal(px(a, x, y), px(a, x, y) + 3, px(b, x, y));
}

pg::image::Image decode(const std::string& png) {
  auto img = pg::image::decode_image(reinterpret_cast<const uint8_t*>(png.data()), png.size(),
                                     "drawn.png");
  EXPECT_TRUE(img.ok()) << img.status().message();
  return img.ok() ? *img : pg::image::Image{};
}

TEST(Draw, BoxBorderMaskAndLabelChangeOnlyTheirPixels) {
  const pg::image::Image in = grey(320, 240);
  pg::tasks::BinaryMask mask;
  mask.x0 = 200;
  mask.y0 = 150;
  mask.width = 40;
  mask.height = 30;
  mask.bits.assign(40 * 30, 0);
  for (int y = 0; y < 15; ++y)
    for (int x = 0; x < 40; ++x) mask.bits[y * 40 + x] = 1;  // top half set
  std::vector<pg::tasks::DrawObject> objects(2);
  objects[0].label = "cat";
  objects[0].x0 = 40;
  objects[0].y0 = 60;
  objects[0].x1 = 140;
  objects[0].y1 = 160;
  objects[1].label = "dog";
  objects[1].x0 = 200;
  objects[1].y0 = 150;
  objects[1].x1 = 240;
  objects[1].y1 = 180;
  objects[1].mask = &mask;

  TempDir tmp;
  const std::string path = tmp.file("out.png");
  ASSERT_TRUE(pg::tasks::draw_png(in, objects, path).ok());
  auto out = pg::image::load_image(path);
  ASSERT_TRUE(out.ok()) << out.status().message();
  ASSERT_EQ(out->width, 320);
  ASSERT_EQ(out->height, 240);

  // On the border of box 0 (left, right, bottom edges): coloured.
  for (auto [x, y] : {std::pair{41, 110}, {138, 110}, {90, 158}})
    EXPECT_FALSE(same(in, *out, x, y)) << x << "," << y;
  // Inside the box, away from the border and the label: unchanged.
  EXPECT_TRUE(same(in, *out, 90, 110));
  // Far away: unchanged.
  for (auto [x, y] : {std::pair{5, 235}, {300, 10}, {170, 100}, {315, 235}})
    EXPECT_TRUE(same(in, *out, x, y));
  // The label tag sits above box 0: changed pixels there.
  int changed = 0;
  for (int y = 40; y < 60; ++y)
    for (int x = 40; x < 80; ++x) changed += same(in, *out, x, y) ? 0 : 1;
  EXPECT_GT(changed, 100);
  // The mask tints its set pixels, not its unset ones (inside box 1, away from the border).
  EXPECT_FALSE(same(in, *out, 220, 158));
  EXPECT_TRUE(same(in, *out, 220, 172));
  // The tint is translucent: the grey still shows (not the pure palette colour).
  const uint8_t* t = px(*out, 220, 158);
  EXPECT_NE(t[0], 0xff);
  EXPECT_GT(t[0] + t[1] + t[2], 0);
}

TEST(Draw, NothingToDrawKeepsTheImage) {
  pg::image::Image in = grey(50, 30);
  for (size_t i = 0; i < in.rgb.size(); ++i) in.rgb[i] = static_cast<uint8_t>(i * 7);
  auto png = pg::tasks::render_png(in, {});
  ASSERT_TRUE(png.ok());
  const pg::image::Image out = decode(*png);
  EXPECT_EQ(out.rgb, in.rgb);
}

TEST(Draw, TextBandAtTheBottom) {
  const pg::image::Image in = grey(200, 100, 200);
  pg::tasks::DrawOptions o;
  o.text = "a cat sitting on a mat, next to a dog that is asleep in the sun";
  auto png = pg::tasks::render_png(in, {}, o);
  ASSERT_TRUE(png.ok());
  const pg::image::Image out = decode(*png);
  EXPECT_TRUE(same(in, out, 100, 5));
  EXPECT_FALSE(same(in, out, 199, 98));  // the band darkens the bottom
}

TEST(Draw, HostileInputDoesNotCrash) {
  const pg::image::Image in = grey(20, 10);
  pg::tasks::BinaryMask mask;  // partly outside the image
  mask.x0 = 15;
  mask.y0 = -5;
  mask.width = 10;
  mask.height = 10;
  mask.bits.assign(100, 1);
  std::vector<pg::tasks::DrawObject> objects(3);
  objects[0].label = "bad \xff\xfe utf8 \x01 and a very long label that does not fit anywhere";
  objects[0].x0 = -50;
  objects[0].y0 = -50;
  objects[0].x1 = 500;
  objects[0].y1 = 500;
  objects[1].label = "";
  objects[1].x0 = objects[1].x1 = 5;
  objects[1].mask = &mask;
  objects[2].label = "\xe2\x82";  // cut UTF-8
  auto png = pg::tasks::render_png(in, objects);
  ASSERT_TRUE(png.ok()) << png.status().message();
  EXPECT_EQ(decode(*png).width, 20);
  EXPECT_EQ(pg::tasks::sanitize_utf8("a\xff"
                                     "b\xe2\x82\xac"
                                     "c\x01"),
            "a?b\xe2\x82\xac"
            "c?");
}

TEST(Draw, Errors) {
  pg::image::Image bad;
  auto r = pg::tasks::render_png(bad, {});
  ASSERT_FALSE(r.ok());
  EXPECT_THAT(r.status().message(), HasSubstr("cannot draw on an image of 0x0"));
  auto st = pg::tasks::draw_png(grey(4, 4), {}, "/nonexistent-dir/out.png");
  ASSERT_FALSE(st.ok());
  EXPECT_THAT(st.message(), HasSubstr("/nonexistent-dir/out.png"));
}

}  // namespace
