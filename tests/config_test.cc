// config.json parsing: HF defaults for omitted keys, released configs, bad configs.
#include "io/config.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include "test_util.h"

namespace {

using pg::io::parse_config;
using ::testing::HasSubstr;

TEST(Config, GoldenPg1UsesGemmaDefaults) {
  auto c = pg::io::load_config(pg::testing::testdata("golden/tiny-pg1"));
  ASSERT_TRUE(c.ok()) << c.status().message();
  EXPECT_FALSE(c->text.is_gemma2());
  EXPECT_EQ(c->text.hidden_size, 64);
  EXPECT_EQ(c->text.head_dim, 24);
  EXPECT_EQ(c->text.num_key_value_heads, 1);
  EXPECT_FLOAT_EQ(c->text.rms_norm_eps, 1e-6f);
  EXPECT_FLOAT_EQ(c->text.rope_theta, 10000.0f);
  EXPECT_FLOAT_EQ(c->text.attention_scale(), 1.0f / std::sqrt(24.0f));
  EXPECT_EQ(c->vision.image_size, 56);
  EXPECT_EQ(c->num_image_tokens(), 16);
  EXPECT_EQ(c->image_token_index, 2048);
  EXPECT_FALSE(c->text.layer_is_sliding(0));
}

TEST(Config, GoldenPg2IgnoresStaleTopLevelHiddenSize) {
  auto c = pg::io::load_config(pg::testing::testdata("golden/tiny-pg2"));
  ASSERT_TRUE(c.ok()) << c.status().message();
  EXPECT_TRUE(c->text.is_gemma2());
  EXPECT_EQ(c->text.hidden_size, 64);
  EXPECT_FLOAT_EQ(c->text.attention_scale(), 1.0f / std::sqrt(24.0f));
  EXPECT_FLOAT_EQ(c->text.attn_logit_softcapping, 3.0f);
  EXPECT_FLOAT_EQ(c->text.final_logit_softcapping, 5.0f);
  EXPECT_EQ(c->text.sliding_window, 20);
  EXPECT_TRUE(c->text.layer_is_sliding(0));
  EXPECT_FALSE(c->text.layer_is_sliding(1));
  EXPECT_TRUE(c->text.layer_is_sliding(2));
}

TEST(Config, ReleasedConfigsTakeTheirDefaults) {
  auto pg1 = pg::io::load_config(pg::testing::testdata("configs/paligemma-3b-224"));
  ASSERT_TRUE(pg1.ok()) << pg1.status().message();
  EXPECT_EQ(pg1->text.head_dim, 256);
  EXPECT_EQ(pg1->text.num_hidden_layers, 18);
  EXPECT_EQ(pg1->vision.num_hidden_layers, 27);
  EXPECT_EQ(pg1->num_image_tokens(), 256);
  EXPECT_FLOAT_EQ(pg1->text.attention_scale(), 1.0f / 16.0f);

  auto pg2 = pg::io::load_config(pg::testing::testdata("configs/paligemma2-28b-224"));
  ASSERT_TRUE(pg2.ok()) << pg2.status().message();
  EXPECT_TRUE(pg2->text.is_gemma2());
  EXPECT_EQ(pg2->text.head_dim, 128);
  EXPECT_FLOAT_EQ(pg2->text.attention_scale(), 1.0f / 12.0f);  // query_pre_attn_scalar 144
  EXPECT_FLOAT_EQ(pg2->text.final_logit_softcapping, 30.0f);

  auto big = pg::io::load_config(pg::testing::testdata("configs/paligemma-3b-896"));
  ASSERT_TRUE(big.ok()) << big.status().message();
  EXPECT_EQ(big->num_image_tokens(), 4096);
}

TEST(Config, Gemma2DefaultsWhenOmitted) {
  auto c = parse_config(
      R"({"text_config": {"model_type": "gemma2", "hidden_size": 2304, "vocab_size": 257216,
      "num_attention_heads": 8, "num_key_value_heads": 4}, "projection_dim": 2304,
      "image_token_index": 257152, "vocab_size": 257216, "vision_config": {"hidden_size": 1152, "patch_size": 14,
      "num_attention_heads": 16}})",
      "cfg");
  ASSERT_TRUE(c.ok()) << c.status().message();
  EXPECT_EQ(c->text.head_dim, 256);
  EXPECT_FLOAT_EQ(c->text.query_pre_attn_scalar, 256.0f);
  EXPECT_FLOAT_EQ(c->text.attn_logit_softcapping, 50.0f);
  EXPECT_FLOAT_EQ(c->text.final_logit_softcapping, 30.0f);
  EXPECT_EQ(c->text.sliding_window, 4096);
  EXPECT_EQ(c->text.max_position_embeddings, 8192);
  EXPECT_EQ(c->vision.image_size, 224);
  EXPECT_EQ(c->num_image_tokens(), 256);
  EXPECT_FLOAT_EQ(c->vision.layer_norm_eps, 1e-6f);
}

TEST(Config, NullSoftcapMeansOff) {
  auto c = parse_config(R"({"text_config": {"model_type": "gemma2", "attn_logit_softcapping": null,
      "hidden_size": 2048, "vocab_size": 257216}, "vision_config": {"patch_size": 14}})",
                        "cfg");
  ASSERT_TRUE(c.ok()) << c.status().message();
  EXPECT_EQ(c->text.attn_logit_softcapping, 0.0f);
}

TEST(Config, NotJson) {
  auto c = parse_config("{\"text_config\": ", "dir/config.json");
  ASSERT_FALSE(c.ok());
  EXPECT_THAT(c.status().message(), HasSubstr("dir/config.json: not valid JSON"));
}

TEST(Config, NotAnObject) {
  auto c = parse_config("[1, 2]", "config.json");
  ASSERT_FALSE(c.ok());
  EXPECT_THAT(c.status().message(), HasSubstr("top level must be a JSON object"));
}

TEST(Config, WrongType) {
  auto c = parse_config(R"({"text_config": {"hidden_size": "big"}})", "config.json");
  ASSERT_FALSE(c.ok());
  EXPECT_THAT(c.status().message(),
              HasSubstr("text_config.hidden_size must be an integer, found \"big\""));
}

TEST(Config, HeadsMustDivideWidth) {
  auto c = parse_config(
      R"({"vision_config": {"hidden_size": 50, "num_attention_heads": 4, "patch_size": 14}})",
      "config.json");
  ASSERT_FALSE(c.ok());
  EXPECT_THAT(c.status().message(),
              HasSubstr("vision_config.hidden_size 50 is not a multiple of num_attention_heads 4"));
}

TEST(Config, KvHeadsMustDivideHeads) {
  auto c = parse_config(R"({"text_config": {"num_attention_heads": 8, "num_key_value_heads": 3}})",
                        "config.json");
  ASSERT_FALSE(c.ok());
  EXPECT_THAT(c.status().message(), HasSubstr("not a multiple of num_key_value_heads 3"));
}

TEST(Config, ProjectionMustMatchTextWidth) {
  auto c =
      parse_config(R"({"projection_dim": 64, "text_config": {"hidden_size": 96}})", "config.json");
  ASSERT_FALSE(c.ok());
  EXPECT_THAT(c.status().message(),
              HasSubstr("projection_dim 64 differs from text_config.hidden_size 96"));
}

TEST(Config, UnknownDecoder) {
  auto c = parse_config(R"({"text_config": {"model_type": "llama"}})", "config.json");
  ASSERT_FALSE(c.ok());
  EXPECT_THAT(c.status().message(), HasSubstr("text_config.model_type \"llama\" is not supported"));
}

TEST(Config, NegativeSize) {
  auto c = parse_config(R"({"text_config": {"num_hidden_layers": -1}})", "config.json");
  ASSERT_FALSE(c.ok());
  EXPECT_THAT(c.status().message(),
              HasSubstr("text_config.num_hidden_layers must be positive, found -1"));
}

TEST(Config, MissingFile) {
  auto c = pg::io::load_config("/nonexistent/folder");
  ASSERT_FALSE(c.ok());
  EXPECT_THAT(c.status().message(), HasSubstr("/nonexistent/folder/config.json"));
}

}  // namespace
