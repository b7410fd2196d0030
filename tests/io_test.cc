// Tests of the file layer: mapped files, safetensors files and checkpoint folders, .npy.
#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <string>
#include <vector>

#include "io/mapped_file.h"
#include "io/npy.h"
#include "io/safetensors.h"

namespace pg::io {
namespace {

using ::testing::HasSubstr;

const std::string kGolden = std::string(PG_TESTDATA_DIR) + "/golden";

// Each test gets a fresh temporary folder, removed afterwards.
class IoTest : public ::testing::Test {
 protected:
  void SetUp() override {
    std::string tmpl = (std::filesystem::temp_directory_path() / "pg_io_test.XXXXXX").string();
    ASSERT_NE(mkdtemp(tmpl.data()), nullptr);
    dir_ = tmpl;
  }
  void TearDown() override { std::filesystem::remove_all(dir_); }

  std::string path(const std::string& name) const { return dir_ + "/" + name; }
  std::string write(const std::string& name, const std::string& bytes) const {
    std::ofstream(path(name), std::ios::binary) << bytes;
    return path(name);
  }
  // A safetensors file from a header text and the data region.
  std::string write_st(const std::string& name, const std::string& header,
                       const std::string& data) const {
    std::string bytes(8, '\0');
    for (int i = 0; i < 8; ++i) bytes[i] = static_cast<char>((header.size() >> (8 * i)) & 0xff);
    return write(name, bytes + header + data);
  }
  // The message of opening a bad safetensors file (which must fail).
  std::string open_error(const std::string& file) const {
    Result<SafetensorsFile> r = SafetensorsFile::open(file);
    EXPECT_FALSE(r.ok());
    return r.ok() ? std::string() : r.status().message();
  }

  std::string dir_;
};

std::string slurp(const std::string& path) {
  Result<std::string> r = read_file(path);
  EXPECT_TRUE(r.ok()) << r.status().to_string();
  return r.ok() ? *r : std::string();
}

// ---- mapped files -------------------------------------------------------------------

TEST_F(IoTest, WriteReadAndMap) {
  const std::string p = path("a.bin");
  ASSERT_TRUE(write_file_atomic(p, "hello", 5).ok());
  ASSERT_TRUE(write_file_atomic(p, "hello world", 11).ok());  // replaces
  EXPECT_EQ(slurp(p), "hello world");
  Result<std::shared_ptr<MappedFile>> m = MappedFile::open(p);
  ASSERT_TRUE(m.ok());
  EXPECT_EQ((*m)->size(), 11u);
  EXPECT_EQ(std::string(reinterpret_cast<const char*>((*m)->data()), 11), "hello world");
  EXPECT_EQ((*m)->path(), p);
  // No temporary file is left behind.
  EXPECT_EQ(std::distance(std::filesystem::directory_iterator(dir_), {}), 1);
}

TEST_F(IoTest, EmptyFile) {
  const std::string p = write("empty", "");
  Result<std::shared_ptr<MappedFile>> m = MappedFile::open(p);
  ASSERT_TRUE(m.ok());
  EXPECT_EQ((*m)->size(), 0u);
  EXPECT_EQ(slurp(p), "");
}

TEST_F(IoTest, MapErrorsNameThePath) {
  Result<std::shared_ptr<MappedFile>> m = MappedFile::open(path("nope"));
  ASSERT_FALSE(m.ok());
  EXPECT_EQ(m.status().code(), StatusCode::kNotFound);
  EXPECT_THAT(m.status().message(), HasSubstr(path("nope")));
  EXPECT_THAT(m.status().message(), HasSubstr("No such file or directory"));
  m = MappedFile::open(dir_);
  ASSERT_FALSE(m.ok());
  EXPECT_THAT(m.status().message(), HasSubstr(dir_ + ": is a directory"));
  Result<std::string> r = read_file(dir_);
  ASSERT_FALSE(r.ok());
  EXPECT_THAT(r.status().message(), HasSubstr(dir_));
}

TEST_F(IoTest, PermissionDenied) {
  if (geteuid() == 0) GTEST_SKIP() << "root reads any file";
  const std::string p = write("secret", "x");
  ASSERT_EQ(chmod(p.c_str(), 0), 0);
  Result<std::string> r = read_file(p);
  ASSERT_FALSE(r.ok());
  EXPECT_THAT(r.status().message(), HasSubstr(p));
  EXPECT_THAT(r.status().message(), HasSubstr("Permission denied"));
}

TEST_F(IoTest, WriteIntoMissingFolderFails) {
  Status s = write_file_atomic(path("no/such/file"), "x", 1);
  ASSERT_FALSE(s.ok());
  EXPECT_THAT(s.message(), HasSubstr(path("no/such/file")));
}

// ---- safetensors round trip ---------------------------------------------------------

TEST_F(IoTest, SafetensorsRoundTrip) {
  const std::vector<float> a = {1, -2, 3.5f, 4, 5, 6};
  const std::vector<uint16_t> b = {f32_to_bf16(1.5f), f32_to_bf16(-2), 0x7fc0};
  const int64_t c = -42;
  const std::string p = path("rt.safetensors");
  ASSERT_TRUE(write_safetensors(p,
                                {{"z.weight", DType::kF32, {2, 3}, a.data()},
                                 {"b.bf16", DType::kBF16, {3}, b.data()},
                                 {"scalar", DType::kI64, {}, &c},
                                 {"empty", DType::kU8, {4, 0}, nullptr}},
                                {{"format", "pt"}})
                  .ok());

  // The header keeps the given order and is padded so that the data is 8-byte aligned.
  const std::string raw = slurp(p);
  uint64_t n = 0;
  std::memcpy(&n, raw.data(), 8);
  EXPECT_EQ(n % 8, 0u);
  const std::string header = raw.substr(8, n);
  EXPECT_LT(header.find("z.weight"), header.find("b.bf16"));
  EXPECT_LT(header.find("b.bf16"), header.find("scalar"));
  EXPECT_EQ(raw.size(), 8 + n + 24 + 6 + 8);

  Result<SafetensorsFile> f = SafetensorsFile::open(p);
  ASSERT_TRUE(f.ok()) << f.status().to_string();
  EXPECT_EQ(f->path(), p);
  EXPECT_EQ(f->metadata().at("format"), "pt");
  ASSERT_EQ(f->tensors().size(), 4u);
  const TensorView& va = f->tensors().at("z.weight");
  EXPECT_EQ(va.dtype, DType::kF32);
  EXPECT_EQ(va.shape, (Shape{2, 3}));
  EXPECT_EQ(std::memcmp(va.data, a.data(), 24), 0);
  const TensorView& vb = f->tensors().at("b.bf16");
  EXPECT_EQ(vb.dtype, DType::kBF16);
  EXPECT_EQ(vb.shape, (Shape{3}));
  EXPECT_EQ(std::memcmp(vb.data, b.data(), 6), 0);
  const TensorView& vc = f->tensors().at("scalar");
  EXPECT_EQ(vc.dtype, DType::kI64);
  EXPECT_TRUE(vc.shape.empty());
  int64_t c2 = 0;
  std::memcpy(&c2, vc.data, 8);  // unaligned: follows 6 bytes of bf16
  EXPECT_EQ(c2, -42);
  EXPECT_EQ(f->tensors().at("empty").shape, (Shape{4, 0}));
  EXPECT_EQ(f->tensors().at("empty").nbytes(), 0u);

  Result<TensorStore> store = TensorStore::open_file(p);
  ASSERT_TRUE(store.ok());
  EXPECT_NE(store->find("scalar"), nullptr);
  EXPECT_EQ(store->find("missing"), nullptr);
  EXPECT_EQ(store->file_of("z.weight"), p);
  EXPECT_EQ(store->file_of("missing"), "");
}

TEST_F(IoTest, WriteSafetensorsRejectsDuplicates) {
  const float x = 1;
  Status s = write_safetensors(path("d.safetensors"),
                               {{"x", DType::kF32, {1}, &x}, {"x", DType::kF32, {1}, &x}});
  ASSERT_FALSE(s.ok());
  EXPECT_THAT(s.message(), HasSubstr("'x'"));
}

// ---- golden checkpoints -------------------------------------------------------------

TEST(GoldenTest, OpensSingleFileCheckpoint) {
  Result<TensorStore> store = TensorStore::open_dir(kGolden + "/tiny-pg1");
  ASSERT_TRUE(store.ok()) << store.status().to_string();
  const TensorView* embed = store->find("language_model.model.embed_tokens.weight");
  ASSERT_NE(embed, nullptr);
  EXPECT_EQ(embed->dtype, DType::kF32);
  EXPECT_EQ(embed->shape, (Shape{2112, 64}));
  const TensorView* down = store->find("language_model.model.layers.0.mlp.down_proj.weight");
  ASSERT_NE(down, nullptr);
  EXPECT_EQ(down->shape, (Shape{64, 96}));
  EXPECT_EQ(store->tensors().size(), 59u);
  EXPECT_EQ(store->metadata().at("format"), "pt");
  EXPECT_THAT(store->file_of("language_model.model.embed_tokens.weight"),
              HasSubstr("tiny-pg1/model.safetensors"));
  EXPECT_EQ(store->find("lm_head.weight"), nullptr);
}

TEST(GoldenTest, OpensShardedCheckpoint) {
  Result<TensorStore> store = TensorStore::open_dir(kGolden + "/tiny-pg2/");
  ASSERT_TRUE(store.ok()) << store.status().to_string();
  EXPECT_EQ(store->tensors().size(), 74u);
  const TensorView* embed = store->find("language_model.model.embed_tokens.weight");
  ASSERT_NE(embed, nullptr);
  EXPECT_EQ(embed->dtype, DType::kBF16);
  EXPECT_EQ(embed->shape, (Shape{2112, 64}));
  EXPECT_THAT(store->file_of("language_model.model.embed_tokens.weight"),
              HasSubstr("model-00001-of-00002.safetensors"));
  const char* patch = "vision_tower.vision_model.embeddings.patch_embedding.weight";
  ASSERT_NE(store->find(patch), nullptr);
  EXPECT_EQ(store->find(patch)->shape, (Shape{48, 3, 14, 14}));
  EXPECT_THAT(store->file_of(patch), HasSubstr("model-00002-of-00002.safetensors"));
  for (const auto& [name, view] : store->tensors()) {
    EXPECT_EQ(view.dtype, DType::kBF16) << name;
  }
  EXPECT_EQ(store->metadata().at("format"), "pt");
}

// ---- bad checkpoint folders ---------------------------------------------------------

TEST_F(IoTest, MissingFolder) {
  Result<TensorStore> r = TensorStore::open_dir(path("absent"));
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.status().code(), StatusCode::kNotFound);
  EXPECT_THAT(r.status().message(), HasSubstr(path("absent")));
  EXPECT_THAT(r.status().message(), HasSubstr("does not exist"));
}

TEST_F(IoTest, FolderWithoutWeights) {
  write("config.json", "{}");
  Result<TensorStore> r = TensorStore::open_dir(dir_);
  ASSERT_FALSE(r.ok());
  EXPECT_THAT(r.status().message(),
              HasSubstr("no model.safetensors or model.safetensors.index.json in " + dir_));
}

// ---- bad safetensors files ----------------------------------------------------------

TEST_F(IoTest, ThreeByteFile) {
  const std::string msg = open_error(write("x.safetensors", "abc"));
  EXPECT_THAT(msg, HasSubstr(path("x.safetensors")));
  EXPECT_THAT(msg, HasSubstr("file is 3 bytes"));
}

TEST_F(IoTest, HeaderLongerThanFile) {
  std::string bytes(8, '\0');
  bytes[0] = 100;
  const std::string msg = open_error(write("x.safetensors", bytes + "{}"));
  EXPECT_THAT(msg, HasSubstr(path("x.safetensors")));
  EXPECT_THAT(msg, HasSubstr("header length 100 exceeds the 2 bytes"));
}

TEST_F(IoTest, AbsurdHeaderLength) {
  const std::string msg = open_error(write("x.safetensors", std::string(7, '\xff') + "\x7f{}"));
  EXPECT_THAT(msg, HasSubstr("header length 9223372036854775807 exceeds the limit"));
}

TEST_F(IoTest, HeaderNotJson) {
  const std::string msg = open_error(write_st("x.safetensors", "{\"a\": [", ""));
  EXPECT_THAT(msg, HasSubstr(path("x.safetensors") + ": header is not valid JSON"));
}

TEST_F(IoTest, HeaderNotObject) {
  const std::string msg = open_error(write_st("x.safetensors", "[1, 2]  ", ""));
  EXPECT_THAT(msg, HasSubstr("header is not a JSON object but [1,2]"));
}

TEST_F(IoTest, EntryNotObject) {
  const std::string msg = open_error(write_st("x.safetensors", R"({"w": 5})", ""));
  EXPECT_THAT(msg, HasSubstr("tensor 'w': entry is not a JSON object but 5"));
}

TEST_F(IoTest, EntryLacksShape) {
  const std::string msg = open_error(write_st(
      "x.safetensors", R"({"w": {"dtype": "F32", "data_offsets": [0, 4]}})", std::string(4, '\0')));
  EXPECT_THAT(msg, HasSubstr("tensor 'w': entry has no \"shape\""));
}

TEST_F(IoTest, WrongJsonTypes) {
  std::string msg = open_error(write_st(
      "a.safetensors", R"({"w": {"dtype": 32, "shape": [1], "data_offsets": [0, 4]}})", "xxxx"));
  EXPECT_THAT(msg, HasSubstr("tensor 'w': dtype is not a string but 32"));
  msg = open_error(write_st(
      "b.safetensors", R"({"w": {"dtype": "F32", "shape": "1", "data_offsets": [0, 4]}})", "xxxx"));
  EXPECT_THAT(msg, HasSubstr("tensor 'w': shape is not an array"));
  msg = open_error(write_st("c.safetensors",
                            R"({"w": {"dtype": "F32", "shape": [1], "data_offsets": [0, 4.0]}})",
                            "xxxx"));
  EXPECT_THAT(msg, HasSubstr("data_offsets [0,4.0] is not a pair of non-negative integers"));
}

TEST_F(IoTest, NegativeDimension) {
  const std::string msg = open_error(
      write_st("x.safetensors",
               R"({"w": {"dtype": "F32", "shape": [2, -1], "data_offsets": [0, 4]}})", "xxxx"));
  EXPECT_THAT(msg, HasSubstr("tensor 'w': shape [2,-1]: dimension 1 (-1)"));
}

TEST_F(IoTest, NumelOverflow) {
  const std::string msg = open_error(write_st(
      "x.safetensors",
      R"({"w": {"dtype": "F32", "shape": [4294967296, 4294967296], "data_offsets": [0, 0]}})", ""));
  EXPECT_THAT(msg, HasSubstr("tensor 'w': shape [4294967296,4294967296] has too many elements"));
}

TEST_F(IoTest, UnknownDtype) {
  const std::string msg = open_error(
      write_st("x.safetensors",
               R"({"w": {"dtype": "F8_E4M3", "shape": [4], "data_offsets": [0, 4]}})", "xxxx"));
  EXPECT_THAT(msg, HasSubstr(path("x.safetensors") + ": tensor 'w': unknown dtype 'F8_E4M3'"));
}

TEST_F(IoTest, SizeMismatch) {
  const std::string msg = open_error(write_st(
      "x.safetensors", R"({"w": {"dtype": "F32", "shape": [2, 3], "data_offsets": [0, 20]}})",
      std::string(24, '\0')));
  EXPECT_THAT(msg, HasSubstr("tensor 'w': data_offsets [0, 20] span 20 bytes, but F32 [2, 3] "
                             "needs 24"));
}

TEST_F(IoTest, BeginAfterEnd) {
  const std::string msg = open_error(
      write_st("x.safetensors", R"({"w": {"dtype": "F32", "shape": [0], "data_offsets": [8, 4]}})",
               std::string(8, '\0')));
  EXPECT_THAT(msg, HasSubstr("tensor 'w': data_offsets [8, 4] begins after it ends"));
}

TEST_F(IoTest, TruncatedFile) {
  std::vector<float> w(100, 1.0f);
  const std::string p = path("t.safetensors");
  ASSERT_TRUE(write_safetensors(p, {{"x.weight", DType::kF32, {100}, w.data()}}).ok());
  std::filesystem::resize_file(p, std::filesystem::file_size(p) - 88);
  const std::string msg = open_error(p);
  EXPECT_THAT(msg, HasSubstr(p + ": tensor 'x.weight': data_offsets [0, 400] end past the end "
                                 "of the data (312 bytes); the file may be truncated"));
}

TEST_F(IoTest, MetadataMustBeStrings) {
  const std::string msg =
      open_error(write_st("x.safetensors", R"({"__metadata__": {"format": 1}})", ""));
  EXPECT_THAT(msg, HasSubstr("__metadata__ 'format' is not a string but 1"));
}

// Every prefix and every single-byte corruption of a valid file either fails cleanly or
// yields views inside the file (run under the sanitizers, this also checks memory safety).
TEST_F(IoTest, CorruptedFilesNeverReadOutOfBounds) {
  const uint16_t v[3] = {1, 2, 3};
  const std::string p = path("ok.safetensors");
  ASSERT_TRUE(
      write_safetensors(p, {{"a", DType::kBF16, {3}, v}, {"b", DType::kU8, {2}, v}}, {{"k", "v"}})
          .ok());
  const std::string good = slurp(p);
  auto check = [&](const std::string& bytes) {
    const std::string q = write("bad.safetensors", bytes);
    Result<SafetensorsFile> f = SafetensorsFile::open(q);
    if (!f.ok()) {
      EXPECT_THAT(f.status().message(), HasSubstr(q));
      return;
    }
    for (const auto& [name, view] : f->tensors()) {
      const auto* d = static_cast<const uint8_t*>(view.data);
      uint8_t sum = 0;
      for (size_t i = 0; i < view.nbytes(); ++i) sum += d[i];  // ASan checks these reads
      (void)sum;
    }
  };
  for (size_t n = 0; n < good.size(); ++n) check(good.substr(0, n));
  for (size_t i = 0; i < good.size(); ++i) {
    for (const char c : {'\0', '9', '"', '-', '\xff'}) {
      std::string bad = good;
      bad[i] = c;
      check(bad);
    }
  }
}

// ---- bad sharded checkpoints --------------------------------------------------------

class ShardTest : public IoTest {
 protected:
  void SetUp() override {
    IoTest::SetUp();
    const float v[2] = {1, 2};
    ASSERT_TRUE(write_safetensors(path("s1.safetensors"), {{"a", DType::kF32, {2}, v}}).ok());
    ASSERT_TRUE(write_safetensors(path("s2.safetensors"),
                                  {{"b", DType::kF32, {1}, v}, {"extra", DType::kF32, {1}, v}})
                    .ok());
  }
  std::string index_error(const std::string& weight_map) {
    write("model.safetensors.index.json", "{\"weight_map\": " + weight_map + "}");
    Result<TensorStore> r = TensorStore::open_dir(dir_);
    EXPECT_FALSE(r.ok());
    return r.ok() ? std::string() : r.status().message();
  }
};

TEST_F(ShardTest, GoodIndexIncludesUnlistedTensors) {
  write("model.safetensors.index.json",
        R"({"weight_map": {"a": "s1.safetensors", "b": "s2.safetensors"}})");
  Result<TensorStore> r = TensorStore::open_dir(dir_);
  ASSERT_TRUE(r.ok()) << r.status().to_string();
  EXPECT_EQ(r->tensors().size(), 3u);
  EXPECT_NE(r->find("extra"), nullptr);
  EXPECT_EQ(r->file_of("b"), path("s2.safetensors"));
}

TEST_F(ShardTest, IndexNamesMissingShard) {
  const std::string msg = index_error(R"({"a": "s1.safetensors", "b": "s3.safetensors"})");
  EXPECT_THAT(msg, HasSubstr("shard 's3.safetensors'"));
  EXPECT_THAT(msg, HasSubstr(path("s3.safetensors") + ": No such file or directory"));
}

TEST_F(ShardTest, IndexNamesTensorItsShardLacks) {
  const std::string msg = index_error(R"({"a": "s1.safetensors", "c": "s2.safetensors"})");
  EXPECT_THAT(msg, HasSubstr("lists tensor 'c' in " + path("s2.safetensors") +
                             ", but that shard has no such tensor"));
}

TEST_F(ShardTest, IndexPutsTensorInWrongShard) {
  const std::string msg = index_error(R"({"a": "s2.safetensors", "b": "s2.safetensors"})");
  EXPECT_THAT(msg, HasSubstr("lists tensor 'a' in " + path("s2.safetensors")));
}

TEST_F(ShardTest, IndexWithParentDirectoryShard) {
  const std::string msg = index_error(R"({"a": "../s1.safetensors"})");
  EXPECT_THAT(msg, HasSubstr("tensor 'a': shard '../s1.safetensors' is not a plain file name"));
}

TEST_F(ShardTest, SameTensorInTwoShards) {
  const float v = 0;
  ASSERT_TRUE(write_safetensors(path("s3.safetensors"), {{"a", DType::kF32, {1}, &v}}).ok());
  const std::string msg = index_error(R"({"a": "s1.safetensors", "b": "s3.safetensors"})");
  EXPECT_THAT(msg, HasSubstr("tensor 'a' is in two shards"));
}

TEST_F(ShardTest, IndexWithoutWeightMap) {
  write("model.safetensors.index.json", R"({"metadata": {}})");
  Result<TensorStore> r = TensorStore::open_dir(dir_);
  ASSERT_FALSE(r.ok());
  EXPECT_THAT(r.status().message(), HasSubstr("model.safetensors.index.json: no \"weight_map\""));
  write("model.safetensors.index.json", R"({"weight_map": {"a": "s1.safetensors",)");
  r = TensorStore::open_dir(dir_);
  ASSERT_FALSE(r.ok());
  EXPECT_THAT(r.status().message(), HasSubstr("model.safetensors.index.json: not valid JSON"));
}

TEST_F(ShardTest, BadShardNamesTheIndexAndTheShard) {
  write("s4.safetensors", "abc");
  const std::string msg = index_error(R"({"a": "s4.safetensors"})");
  EXPECT_THAT(msg, HasSubstr("model.safetensors.index.json: shard 's4.safetensors'"));
  EXPECT_THAT(msg, HasSubstr("file is 3 bytes"));
}

// ---- npy ----------------------------------------------------------------------------

TEST(NpyTest, RoundTripShapes) {
  const std::vector<float> values = {1, 2, 3, 4, 5, 6};
  const std::vector<std::pair<Shape, std::string>> cases = {{{}, "'shape': (), }"},
                                                            {{5}, "'shape': (5,), }"},
                                                            {{2, 3}, "'shape': (2, 3), }"},
                                                            {{1, 0}, "'shape': (1, 0), }"}};
  for (const auto& [shape, text] : cases) {
    const std::string bytes = encode_npy(values.data(), shape);
    EXPECT_EQ(bytes.substr(0, 8), std::string("\x93NUMPY\x01\x00", 8));
    const size_t header_len =
        static_cast<uint8_t>(bytes[8]) | (static_cast<uint8_t>(bytes[9]) << 8);
    EXPECT_EQ((10 + header_len) % 64, 0u);
    const std::string header = bytes.substr(10, header_len);
    EXPECT_EQ(header.rfind("{'descr': '<f4', 'fortran_order': False, ", 0), 0u) << header;
    EXPECT_THAT(header, HasSubstr(text));
    EXPECT_EQ(header.back(), '\n');
    const size_t n = static_cast<size_t>(shape_numel(shape));
    EXPECT_EQ(bytes.size(), 10 + header_len + 4 * n);

    Result<NpyArray> a =
        decode_npy(reinterpret_cast<const uint8_t*>(bytes.data()), bytes.size(), "a.npy");
    ASSERT_TRUE(a.ok()) << a.status().to_string();
    EXPECT_EQ(a->dtype, DType::kF32);
    EXPECT_EQ(a->shape, shape);
    ASSERT_EQ(a->data.size(), 4 * n);
    if (n > 0) {
      EXPECT_EQ(std::memcmp(a->data.data(), values.data(), 4 * n), 0);
    }
  }
}

TEST_F(IoTest, WriteAndReadNpy) {
  const float v[3] = {0.5f, -1, 2};
  ASSERT_TRUE(write_npy(path("v.npy"), v, {3}).ok());
  Result<NpyArray> a = read_npy(path("v.npy"));
  ASSERT_TRUE(a.ok()) << a.status().to_string();
  EXPECT_EQ(a->shape, (Shape{3}));
  EXPECT_EQ(std::memcmp(a->data.data(), v, 12), 0);
  Result<NpyArray> missing = read_npy(path("missing.npy"));
  ASSERT_FALSE(missing.ok());
  EXPECT_THAT(missing.status().message(), HasSubstr(path("missing.npy")));
}

// .npy bytes with a hand-written header (version 1 or 2), padded as numpy does.
std::string npy(const std::string& dict, const std::string& data, int version = 1) {
  const size_t prefix = version == 1 ? 10 : 12;
  std::string header = dict;
  while ((prefix + header.size() + 1) % 64 != 0) header += ' ';
  header += '\n';
  std::string out = std::string("\x93NUMPY", 6) + static_cast<char>(version) + '\0';
  for (size_t i = 0; i < prefix - 8; ++i)
    out += static_cast<char>((header.size() >> (8 * i)) & 0xff);
  return out + header + data;
}

Result<NpyArray> decode(const std::string& bytes) {
  return decode_npy(reinterpret_cast<const uint8_t*>(bytes.data()), bytes.size(), "arr.npy");
}

TEST(NpyTest, DecodesOtherDtypes) {
  Result<NpyArray> a =
      decode(npy("{'descr': '|u1', 'fortran_order': False, 'shape': (3,), }", "abc"));
  ASSERT_TRUE(a.ok()) << a.status().to_string();
  EXPECT_EQ(a->dtype, DType::kU8);
  a = decode(npy("{\"descr\": \"<i8\", \"fortran_order\": False, \"shape\": (2L, 1L)}",
                 std::string(16, '\1'), 2));
  ASSERT_TRUE(a.ok()) << a.status().to_string();
  EXPECT_EQ(a->dtype, DType::kI64);
  EXPECT_EQ(a->shape, (Shape{2, 1}));
  for (const auto& [descr, dtype] :
       std::vector<std::pair<std::string, DType>>{{"<f8", DType::kF64},
                                                  {"<i4", DType::kI32},
                                                  {"|i1", DType::kI8},
                                                  {"<f2", DType::kF16},
                                                  {"|b1", DType::kBool},
                                                  {"=f4", DType::kF32}}) {
    a = decode(npy("{'descr': '" + descr + "', 'fortran_order': False, 'shape': (), }",
                   std::string(8, '\0'), 3));
    ASSERT_TRUE(a.ok()) << descr << ": " << a.status().to_string();
    EXPECT_EQ(a->dtype, dtype) << descr;
    EXPECT_EQ(a->data.size(), dtype_size(dtype));
  }
}

TEST(NpyTest, FortranOrder) {
  Result<NpyArray> a = decode(
      npy("{'descr': '<f4', 'fortran_order': True, 'shape': (2, 2), }", std::string(16, '\0')));
  ASSERT_FALSE(a.ok());
  EXPECT_THAT(a.status().message(), HasSubstr("arr.npy: fortran_order True is not supported"));
}

TEST(NpyTest, Truncated) {
  const float v[6] = {};
  std::string bytes = encode_npy(v, {2, 3});
  bytes.resize(bytes.size() - 4);
  Result<NpyArray> a = decode(bytes);
  ASSERT_FALSE(a.ok());
  EXPECT_THAT(a.status().message(), HasSubstr("arr.npy: <f4 array [2, 3] needs 24 bytes of data, "
                                              "but only 20 follow the header"));
  a = decode(bytes.substr(0, 40));
  ASSERT_FALSE(a.ok());
  EXPECT_THAT(a.status().message(), HasSubstr("arr.npy: .npy header length 118 exceeds"));
}

TEST(NpyTest, EveryPrefixIsRejected) {
  const float v[6] = {1, 2, 3, 4, 5, 6};
  const std::string bytes = encode_npy(v, {2, 3});
  for (size_t n = 0; n < bytes.size(); ++n) {
    const std::vector<uint8_t> prefix(bytes.begin(), bytes.begin() + static_cast<ptrdiff_t>(n));
    Result<NpyArray> a = decode_npy(prefix.data(), prefix.size(), "p.npy");
    ASSERT_FALSE(a.ok()) << n;
    EXPECT_THAT(a.status().message(), HasSubstr("p.npy: "));
  }
}

TEST(NpyTest, OtherBadHeaders) {
  Result<NpyArray> a = decode("not an npy file");
  ASSERT_FALSE(a.ok());
  EXPECT_THAT(a.status().message(), HasSubstr("arr.npy: not a .npy array"));
  a = decode(npy("{'descr': '>f4', 'fortran_order': False, 'shape': (1,), }", "abcd"));
  ASSERT_FALSE(a.ok());
  EXPECT_THAT(a.status().message(), HasSubstr("unsupported dtype '>f4'"));
  a = decode(npy("{'descr': '<f4', 'fortran_order': False, 'shape': (1), }", "abcd"));
  ASSERT_FALSE(a.ok());
  EXPECT_THAT(a.status().message(), HasSubstr("'shape' is not a tuple"));
  a = decode(npy("{'descr': [('a', '<f4')], 'fortran_order': False, 'shape': (1,), }", "abcd"));
  ASSERT_FALSE(a.ok());
  EXPECT_THAT(a.status().message(), HasSubstr("structured dtypes are not supported"));
  a = decode(npy("{'descr': '<f4', 'shape': (1,), }", "abcd"));
  ASSERT_FALSE(a.ok());
  EXPECT_THAT(a.status().message(), HasSubstr("lacks 'descr', 'fortran_order' or 'shape'"));
}

}  // namespace
}  // namespace pg::io
