// The task layer's text side: prompts, the detect/segment parser (exact boxes, every malformed
// case), masks in boxes, RLE, base64.
#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <random>

#include "tasks/mask.h"
#include "tasks/parse.h"
#include "tasks/prompts.h"

namespace {

using pg::tasks::ObjectTask;
using pg::tasks::ParsedObject;
using ::testing::HasSubstr;

std::vector<ParsedObject> parse(const std::string& text, ObjectTask task = ObjectTask::kDetect,
                                int w = 640, int h = 480) {
  auto r = pg::tasks::parse_objects(text, task, w, h);
  EXPECT_TRUE(r.ok()) << r.status().message();
  return r.ok() ? *r : std::vector<ParsedObject>{};
}

std::string segs(const std::vector<int>& codes) {
  std::string s;
  char buf[16];
  for (int c : codes) {
    std::snprintf(buf, sizeof(buf), "<seg%03d>", c);
    s += buf;
  }
  return s;
}

const std::vector<int> kCodes = {122, 46, 55, 69, 1, 104, 87, 72, 50, 9, 58, 124, 103, 109, 94, 55};

TEST(Prompts, ReleasedCheckpointPrompts) {
  EXPECT_EQ(*pg::tasks::caption_prompt("en", false), "caption en");
  EXPECT_EQ(*pg::tasks::caption_prompt("pt-BR", true), "describe pt-BR");
  EXPECT_EQ(*pg::tasks::ask_prompt("en", "  what is this?  "), "answer en what is this?");
  EXPECT_EQ(pg::tasks::ocr_prompt(), "ocr");
  auto objects = pg::tasks::split_objects(" cat ;dog;  red car ");
  ASSERT_TRUE(objects.ok());
  EXPECT_EQ(*objects, (std::vector<std::string>{"cat", "dog", "red car"}));
  EXPECT_EQ(*pg::tasks::detect_prompt(*objects), "detect cat ; dog ; red car");
  EXPECT_EQ(*pg::tasks::segment_prompt({"cat"}), "segment cat");
}

TEST(Prompts, BadInputIsNamed) {
  EXPECT_THAT(pg::tasks::caption_prompt("", false).status().message(), HasSubstr("language code"));
  EXPECT_THAT(pg::tasks::caption_prompt("en fr", false).status().message(),
              HasSubstr("only letters"));
  EXPECT_THAT(pg::tasks::ask_prompt("en", "  ").status().message(), HasSubstr("question is empty"));
  EXPECT_THAT(pg::tasks::ask_prompt("en", "a\nb").status().message(), HasSubstr("one line"));
  EXPECT_THAT(pg::tasks::split_objects("  ").status().message(), HasSubstr("object list is empty"));
  EXPECT_THAT(pg::tasks::split_objects("cat ; ; dog").status().message(),
              HasSubstr("object name is empty"));
  EXPECT_THAT(pg::tasks::split_objects("<loc0001>").status().message(), HasSubstr("'<' or '>'"));
  EXPECT_THAT(pg::tasks::detect_prompt({}).status().message(), HasSubstr("no objects"));
  EXPECT_THAT(pg::tasks::detect_prompt({"a;b"}).status().message(), HasSubstr("';'"));
}

TEST(Parse, DetectionBoxesInPixels) {
  // y0 x0 y1 x1 order; x = loc / 1024 * width, y = loc / 1024 * height.
  auto o =
      parse("<loc0256><loc0128><loc0768><loc0896> cat ; <loc0100><loc0100><loc0500><loc0500> dog");
  ASSERT_EQ(o.size(), 2u);
  EXPECT_EQ(o[0].error, "");
  EXPECT_EQ(o[0].label, "cat");
  EXPECT_TRUE(o[0].has_box);
  EXPECT_EQ(o[0].locs, (std::array<int, 4>{256, 128, 768, 896}));
  EXPECT_DOUBLE_EQ(o[0].x0, 80.0);
  EXPECT_DOUBLE_EQ(o[0].y0, 120.0);
  EXPECT_DOUBLE_EQ(o[0].x1, 560.0);
  EXPECT_DOUBLE_EQ(o[0].y1, 360.0);
  EXPECT_EQ(o[1].label, "dog");
  EXPECT_DOUBLE_EQ(o[1].x0, 62.5);
  EXPECT_DOUBLE_EQ(o[1].y0, 46.875);
  EXPECT_DOUBLE_EQ(o[1].x1, 312.5);
  EXPECT_DOUBLE_EQ(o[1].y1, 234.375);
  EXPECT_EQ(o[1].source, "<loc0100><loc0100><loc0500><loc0500> dog");
}

TEST(Parse, OddSizesMultiWordLabelsAndMissingSeparators) {
  auto o = parse(
      "<loc0000><loc0000><loc1023><loc1023> red  car <loc0512><loc0256><loc0768><loc0512> a dog;",
      ObjectTask::kDetect, 97, 61);
  ASSERT_EQ(o.size(), 2u);
  EXPECT_EQ(o[0].label, "red  car");
  EXPECT_DOUBLE_EQ(o[0].x1, 1023 / 1024.0 * 97);
  EXPECT_DOUBLE_EQ(o[0].y1, 1023 / 1024.0 * 61);
  EXPECT_EQ(o[1].label, "a dog");
  EXPECT_DOUBLE_EQ(o[1].x0, 256 / 1024.0 * 97);
  EXPECT_DOUBLE_EQ(o[1].y0, 30.5);
  EXPECT_EQ(o[1].error, "");
}

TEST(Parse, EmptyOutputHasNoObjects) {
  EXPECT_TRUE(parse("").empty());
  EXPECT_TRUE(parse("  \n ").empty());
  EXPECT_TRUE(parse(" ; ; ").empty());
}

TEST(Parse, ThreeLocTokensIsAnErrorForThatEntryOnly) {
  auto o = parse("<loc0001><loc0002><loc0003> cat ; <loc0100><loc0100><loc0500><loc0500> dog");
  ASSERT_EQ(o.size(), 2u);
  EXPECT_EQ(o[0].error, "expected 4 <loc> tokens (y0 x0 y1 x1), got 3");
  EXPECT_FALSE(o[0].has_box);
  EXPECT_EQ(o[0].label, "cat");
  EXPECT_EQ(o[1].error, "");
  EXPECT_DOUBLE_EQ(o[1].x1, 312.5);
}

TEST(Parse, FiveLocTokens) {
  auto o = parse("<loc0001><loc0002><loc0003><loc0004><loc0005> cat");
  ASSERT_EQ(o.size(), 1u);
  EXPECT_EQ(o[0].error, "expected 4 <loc> tokens (y0 x0 y1 x1), got 5");
}

TEST(Parse, EmptyOrInvertedBoxes) {
  auto o = parse(
      "<loc0500><loc0100><loc0100><loc0500> cat ; <loc0100><loc0500><loc0500><loc0100> dog ; "
      "<loc0100><loc0100><loc0100><loc0500> flat ; <loc0100><loc0100><loc0500><loc0500> ok");
  ASSERT_EQ(o.size(), 4u);
  EXPECT_EQ(o[0].error, "empty box: y1 (<loc100>) is not below y0 (<loc500>)");
  EXPECT_FALSE(o[0].has_box);
  EXPECT_THAT(o[1].error, HasSubstr("empty box: x1 (<loc100>) is not right of x0 (<loc500>)"));
  EXPECT_THAT(o[2].error, HasSubstr("empty box: y1"));
  EXPECT_EQ(o[3].error, "");
}

TEST(Parse, BadTokens) {
  auto o = parse(
      "<loc1024><loc0000><loc0100><loc0100> a ; <loc12><loc0000><loc0100><loc0100> b ; "
      "<loc><loc0000><loc0100><loc0100> c");
  ASSERT_EQ(o.size(), 3u);
  EXPECT_EQ(o[0].error, "loc value 1024 in '<loc1024>' is out of range 0..1023");
  EXPECT_THAT(o[1].error, HasSubstr("malformed token '<loc12>'"));
  EXPECT_THAT(o[2].error, HasSubstr("malformed token '<loc>'"));
  // '<' that does not start a token is ordinary label text.
  auto t = parse("<loc0000><loc0000><loc0100><loc0100> a <b> c");
  ASSERT_EQ(t.size(), 1u);
  EXPECT_EQ(t[0].label, "a <b> c");
  EXPECT_EQ(t[0].error, "");
}

TEST(Parse, GarbageBetweenEntries) {
  auto o = parse(
      "<loc0256><loc0128><loc0768><loc0896> cat ; %% garbage %% ; "
      "<loc0100><loc0100><loc0500><loc0500> dog");
  ASSERT_EQ(o.size(), 3u);
  EXPECT_EQ(o[0].error, "");
  EXPECT_EQ(o[1].error, "text without a box: '%% garbage %%'");
  EXPECT_FALSE(o[1].has_box);
  EXPECT_EQ(o[2].error, "");
  EXPECT_EQ(o[2].label, "dog");

  // Stray text right before an entry's tokens: its own error entry; the entry still parses.
  auto p = parse("blah <loc0100><loc0100><loc0500><loc0500> dog");
  ASSERT_EQ(p.size(), 2u);
  EXPECT_EQ(p[0].error, "text without a box: 'blah'");
  EXPECT_EQ(p[1].error, "");

  // Text between the tokens: the tokens before it make an entry, the ones after another.
  auto q = parse("<loc0100><loc0100> x <loc0500><loc0500> dog");
  ASSERT_EQ(q.size(), 2u);
  EXPECT_EQ(q[0].error, "expected 4 <loc> tokens (y0 x0 y1 x1), got 2");
  EXPECT_EQ(q[1].error, "expected 4 <loc> tokens (y0 x0 y1 x1), got 2");
}

TEST(Parse, MissingLabel) {
  auto o = parse("<loc0100><loc0100><loc0500><loc0500>");
  ASSERT_EQ(o.size(), 1u);
  EXPECT_EQ(o[0].error, "the entry has no label after its tokens");
  EXPECT_TRUE(o[0].has_box);  // the box itself is fine
}

TEST(Parse, Segmentation) {
  const std::string entry = "<loc0256><loc0128><loc0768><loc0896>" + segs(kCodes) + " cat";
  auto o = parse(entry + " ; " + "<loc0100><loc0100><loc0500><loc0500> " + segs(kCodes) + " dog",
                 ObjectTask::kSegment);
  ASSERT_EQ(o.size(), 2u);
  for (const auto& e : o) {
    EXPECT_EQ(e.error, "");
    EXPECT_EQ(e.seg_codes, kCodes);
  }
  EXPECT_DOUBLE_EQ(o[0].x0, 80.0);
  EXPECT_EQ(o[1].label, "dog");
}

TEST(Parse, FifteenSegCodes) {
  const std::vector<int> fifteen(kCodes.begin(), kCodes.end() - 1);
  auto o = parse("<loc0256><loc0128><loc0768><loc0896>" + segs(fifteen) + " cat ; " +
                     "<loc0100><loc0100><loc0500><loc0500>" + segs(kCodes) + " dog",
                 ObjectTask::kSegment);
  ASSERT_EQ(o.size(), 2u);
  EXPECT_EQ(o[0].error, "expected 16 <seg> tokens after the box, got 15");
  EXPECT_TRUE(o[0].has_box);
  EXPECT_TRUE(o[0].seg_codes.empty());
  EXPECT_EQ(o[1].error, "");
  // A box without codes in a segmentation answer.
  auto p = parse("<loc0256><loc0128><loc0768><loc0896> cat", ObjectTask::kSegment);
  ASSERT_EQ(p.size(), 1u);
  EXPECT_EQ(p[0].error, "expected 16 <seg> tokens after the box, got 0");
}

TEST(Parse, SegCodeOver127) {
  std::vector<int> codes = kCodes;
  auto text = "<loc0256><loc0128><loc0768><loc0896>" + segs(codes) + " cat";
  text.replace(text.find("<seg046>"), 8, "<seg128>");
  auto o = parse(text, ObjectTask::kSegment);
  ASSERT_EQ(o.size(), 1u);
  EXPECT_EQ(o[0].error, "seg value 128 in '<seg128>' is out of range 0..127");
  auto p = parse("<loc0256><loc0128><loc0768><loc0896><seg1000> cat", ObjectTask::kSegment);
  ASSERT_EQ(p.size(), 1u);
  EXPECT_THAT(p[0].error, HasSubstr("malformed token '<seg1000>'"));
}

TEST(Parse, LocAfterSegs) {
  auto o =
      parse("<loc0256><loc0128><loc0768>" + segs(kCodes) + "<loc0896> cat", ObjectTask::kSegment);
  ASSERT_EQ(o.size(), 1u);
  EXPECT_THAT(o[0].error, HasSubstr("a <loc> token follows <seg> tokens"));
}

TEST(Parse, DetectKeepsSixteenCodesAndRejectsOtherCounts) {
  auto o = parse("<loc0256><loc0128><loc0768><loc0896>" + segs(kCodes) +
                 " cat ; <loc0256><loc0128><loc0768>"
                 "<loc0896><seg001> dog");
  ASSERT_EQ(o.size(), 2u);
  EXPECT_EQ(o[0].error, "");
  EXPECT_EQ(o[0].seg_codes, kCodes);
  EXPECT_EQ(o[1].error, "expected 0 or 16 <seg> tokens after the box, got 1");
}

TEST(Parse, BadImageSize) {
  auto r = pg::tasks::parse_objects("x", ObjectTask::kDetect, 0, 10);
  ASSERT_FALSE(r.ok());
  EXPECT_THAT(r.status().message(), HasSubstr("image size 0x10"));
}

TEST(Parse, RandomTextNeverCrashes) {
  const std::vector<std::string> pieces = {
      "<loc0001>",  "<loc1023>", "<loc9999>", "<seg000>", "<seg127>", "<seg5>", "<loc",
      "<seg",       ">",         "<",         ";",        " ",        "cat",    "\xff\xfe",
      "<loc00001>", "\n",        "<loc0500>", "<seg099>", "<>",       "<segX>"};
  std::mt19937 rng(7);
  for (int t = 0; t < 3000; ++t) {
    std::string text;
    const int n = static_cast<int>(rng() % 40);
    for (int i = 0; i < n; ++i) text += pieces[rng() % pieces.size()];
    for (ObjectTask task : {ObjectTask::kDetect, ObjectTask::kSegment}) {
      auto r = pg::tasks::parse_objects(text, task, 1 + static_cast<int>(rng() % 2000),
                                        1 + static_cast<int>(rng() % 2000));
      ASSERT_TRUE(r.ok());
      for (const auto& o : *r) {
        if (o.has_box) {
          EXPECT_LT(o.x0, o.x1);
          EXPECT_LT(o.y0, o.y1);
        }
        if (o.error.empty()) {
          EXPECT_TRUE(o.has_box) << text;
        }
      }
    }
  }
}

// Masks

TEST(Mask, BoxOfExactlyTheGridSizeCopiesTheSigns) {
  // A 4x4 grid mapped onto a 4x4-pixel box at (2, 1): pixel centres fall on grid centres.
  std::vector<float> logits(16);
  for (int i = 0; i < 16; ++i) logits[i] = (i % 3 == 0) ? 0.5f : -0.5f;
  auto m = pg::tasks::mask_in_box(logits.data(), 4, 2, 1, 6, 5, 10, 10);
  EXPECT_EQ(m.x0, 2);
  EXPECT_EQ(m.y0, 1);
  ASSERT_EQ(m.width, 4);
  ASSERT_EQ(m.height, 4);
  for (int i = 0; i < 16; ++i) EXPECT_EQ(m.bits[i], i % 3 == 0 ? 1 : 0) << i;
}

TEST(Mask, BilinearUpsamplingAndClipping) {
  // 2x2 grid: left column -1, right column +1 -> in an 8-pixel-wide box the left half is 0.
  const float logits[4] = {-1, 1, -1, 1};
  auto m = pg::tasks::mask_in_box(logits, 2, 0, 0, 8, 2, 100, 100);
  ASSERT_EQ(m.width, 8);
  ASSERT_EQ(m.height, 2);
  for (int y = 0; y < 2; ++y) {
    for (int x = 0; x < 8; ++x) EXPECT_EQ(m.bits[y * 8 + x], x >= 4 ? 1 : 0) << x;
  }
  // A box over the image edge is clipped to the image.
  auto c = pg::tasks::mask_in_box(logits, 2, 90.3, 95.0, 130, 120, 100, 100);
  EXPECT_EQ(c.x0, 90);
  EXPECT_EQ(c.y0, 95);
  EXPECT_EQ(c.width, 10);
  EXPECT_EQ(c.height, 5);
  // Less than a pixel: empty, not a crash.
  auto e = pg::tasks::mask_in_box(logits, 2, 3.1, 3.1, 3.2, 3.2, 100, 100);
  EXPECT_EQ(e.width * e.height, 0);
  EXPECT_TRUE(e.bits.empty());
}

TEST(Mask, RunLengths) {
  pg::tasks::BinaryMask m;
  m.width = 3;
  m.height = 2;
  m.bits = {0, 0, 1, 1, 1, 0};
  EXPECT_EQ(pg::tasks::rle_encode(m), (std::vector<int64_t>{2, 3, 1}));
  m.bits = {1, 1, 0, 0, 0, 1};
  EXPECT_EQ(pg::tasks::rle_encode(m), (std::vector<int64_t>{0, 2, 3, 1}));
  EXPECT_EQ(pg::tasks::rle_decode({0, 2, 3, 1}), m.bits);
  m.bits.assign(6, 0);
  EXPECT_EQ(pg::tasks::rle_encode(m), (std::vector<int64_t>{6}));
}

TEST(Mask, Base64) {
  EXPECT_EQ(pg::tasks::base64_encode(""), "");
  EXPECT_EQ(pg::tasks::base64_encode("f"), "Zg==");
  EXPECT_EQ(pg::tasks::base64_encode("fo"), "Zm8=");
  EXPECT_EQ(pg::tasks::base64_encode("foo"), "Zm9v");
  EXPECT_EQ(pg::tasks::base64_encode("foobar"), "Zm9vYmFy");
  EXPECT_EQ(pg::tasks::base64_encode(std::string("\xff\x00\x10", 3)), "/wAQ");
}

TEST(Mask, PngOfAnEmptyMaskIsAnError) {
  pg::tasks::BinaryMask m;
  auto r = pg::tasks::mask_png(m);
  ASSERT_FALSE(r.ok());
  EXPECT_THAT(r.status().message(), HasSubstr("mask is empty"));
}

}  // namespace
