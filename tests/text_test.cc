// Tokenizer and prompt building against the golden tokenizer.
#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <random>

#include "test_util.h"
#include "text/prompt.h"
#include "text/tokenizer.h"

namespace {

using pg::text::Tokenizer;
using ::testing::HasSubstr;

Tokenizer load() {
  auto t = Tokenizer::load(pg::testing::testdata("golden/tiny-pg1/tokenizer.model"));
  EXPECT_TRUE(t.ok()) << t.status().message();
  return std::move(t).value();
}

TEST(Tokenizer, SpecialIds) {
  Tokenizer t = load();
  EXPECT_EQ(t.pad_id(), 0);
  EXPECT_EQ(t.eos_id(), 1);
  EXPECT_EQ(t.bos_id(), 2);
  EXPECT_EQ(t.unk_id(), 3);
  EXPECT_EQ(t.vocab_size(), 2048);
}

TEST(Tokenizer, EncodesWithoutDummyPrefix) {
  Tokenizer t = load();
  // From expected.json: encode("caption en\n").
  EXPECT_EQ(t.encode("caption en\n"), (std::vector<int>{1941, 1747, 1597, 1166}));
  EXPECT_EQ(t.decode(t.encode("caption en\n")), "caption en\n");
}

TEST(Tokenizer, LocAndSegPiecesFoundByPiece) {
  Tokenizer t = load();
  for (int k : {0, 1, 511, 1023}) {
    const int id = t.loc_id(k);
    ASSERT_GE(id, 0);
    char want[16];
    std::snprintf(want, sizeof(want), "<loc%04d>", k);
    EXPECT_EQ(t.id_to_piece(id), want);
    EXPECT_EQ(t.loc_index(id), k);
    EXPECT_EQ(t.seg_index(id), -1);
  }
  for (int k : {0, 64, 127}) {
    const int id = t.seg_id(k);
    ASSERT_GE(id, 0);
    EXPECT_EQ(t.seg_index(id), k);
  }
  EXPECT_EQ(t.loc_id(1024), -1);
  EXPECT_EQ(t.seg_id(-1), -1);
  EXPECT_EQ(t.loc_index(t.bos_id()), -1);
  // The pieces stay in the decoded text.
  const std::string text = t.decode({t.loc_id(12), t.loc_id(900)});
  EXPECT_EQ(text, "<loc0012><loc0900>");
  EXPECT_EQ(t.encode("<loc0012>"), (std::vector<int>{t.loc_id(12)}));
}

TEST(Tokenizer, UnknownPiece) {
  Tokenizer t = load();
  EXPECT_EQ(t.piece_to_id("<definitely-not-a-piece>"), -1);
  EXPECT_EQ(t.piece_to_id("<unk>"), t.unk_id());
}

TEST(Tokenizer, DecodeSkipsIdsOutsideTheModel) {
  Tokenizer t = load();
  EXPECT_EQ(t.decode({t.vocab_size(), -5, 99999}), "");
}

TEST(Tokenizer, StreamingDeltasConcatenateToTheWholeText) {
  Tokenizer t = load();
  const std::vector<int> ids = t.encode("answer en what is in the image? 12 é 你\n");
  pg::text::StreamingDecoder s(t);
  std::string streamed;
  for (int id : ids) streamed += s.push(id);
  streamed += s.finish();
  EXPECT_EQ(streamed, t.decode(ids));
}

// Long streams go through many windows (StreamingDecoder::kWindow): the deltas must
// still concatenate to the whole text, whatever the ids (random ones include byte-fallback
// pieces that form no character, control pieces and leading-space pieces at every window
// boundary), and no delta may be taken back.
TEST(Tokenizer, StreamingOverManyWindows) {
  Tokenizer t = load();
  std::string long_text;
  for (int i = 0; i < 40; ++i) long_text += "answer en what is in the image? 12 é 你 ok\n";
  std::vector<std::vector<int>> streams = {t.encode(long_text)};
  std::mt19937 rng(7);
  for (int s = 0; s < 4; ++s) {
    std::uniform_int_distribution<int> id(0, t.vocab_size() - 1);
    std::vector<int> ids(700);
    for (int& x : ids) x = id(rng);
    streams.push_back(ids);
  }
  int bytes = 0;
  for (int i = 0; i < t.vocab_size(); ++i) bytes += t.is_byte(i) ? 1 : 0;
  EXPECT_GT(bytes, 0) << "the golden tokenizer has byte-fallback pieces";
  for (const std::vector<int>& ids : streams) {
    ASSERT_GT(ids.size(), 3 * pg::text::StreamingDecoder::kWindow);
    const std::string whole = t.decode(ids);
    pg::text::StreamingDecoder s(t);
    std::string streamed;
    for (int x : ids) {
      streamed += s.push(x);
      ASSERT_EQ(whole.compare(0, streamed.size(), streamed), 0) << "after " << streamed.size();
    }
    streamed += s.finish();
    EXPECT_EQ(streamed, whole);
  }
}

TEST(Tokenizer, MissingAndBadFiles) {
  auto missing = Tokenizer::load("/nonexistent/tokenizer.model");
  ASSERT_FALSE(missing.ok());
  EXPECT_THAT(missing.status().message(), HasSubstr("/nonexistent/tokenizer.model: cannot open"));
  auto bad = Tokenizer::load(pg::testing::testdata("golden/tiny-pg1/config.json"));
  ASSERT_FALSE(bad.ok());
  EXPECT_THAT(bad.status().message(), HasSubstr("not a SentencePiece model"));
}

TEST(Prompt, ImageTokensBosTextNewline) {
  Tokenizer t = load();
  auto p = pg::text::build_prompt(t, "caption en", 16, 2, 2048);
  ASSERT_TRUE(p.ok());
  ASSERT_EQ(p->ids.size(), 32u + 1u + 4u);
  for (int i = 0; i < 32; ++i) EXPECT_EQ(p->ids[i], 2048);
  EXPECT_EQ(p->ids[32], 2);
  EXPECT_EQ(p->prefix_len, 37);
  EXPECT_EQ(p->num_image_tokens, 32);
}

TEST(Prompt, TrainingExampleAppendsSuffixAndEos) {
  Tokenizer t = load();
  // From expected.json's "train" entry.
  auto p = pg::text::build_training_example(t, "caption en", "a red square and a blue circle", 16,
                                            1, 2048);
  ASSERT_TRUE(p.ok());
  EXPECT_EQ(p->prefix_len, 21);
  const std::vector<int> tail(p->ids.begin() + 21, p->ids.end());
  EXPECT_EQ(tail, (std::vector<int>{1979, 1467, 1983, 1968, 1461, 1415, 1457, 1984, 1985, 1973,
                                    1909, 1982, 1460, 1}));
}

TEST(Prompt, EmptyPromptIsAnError) {
  Tokenizer t = load();
  auto p = pg::text::build_prompt(t, "", 16, 1, 2048);
  ASSERT_FALSE(p.ok());
  EXPECT_THAT(p.status().message(), HasSubstr("the prompt is empty"));
}

}  // namespace
