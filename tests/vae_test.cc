// The segmentation VQ-VAE decoder: the golden tiny-vae case within 1e-4, a decoder of other
// sizes against a plain PyTorch-semantics reference (so no size is hard-coded), .npz reading
// (stored and deflated) and its errors.
#include "tasks/vae.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <zip.h>

#include <chrono>
#include <cstring>
#include <fstream>
#include <random>

#include "io/npy.h"
#include "io/safetensors.h"
#include "tasks/npz.h"
#include "test_util.h"

namespace {

using pg::testing::TempDir;
using pg::testing::testdata;
using ::testing::HasSubstr;

const std::string kVae = testdata("golden/tiny-vae/vae.npz");

std::vector<float> read_f32(const pg::TensorView& v) {
  std::vector<float> out(static_cast<size_t>(v.numel()));
  std::memcpy(out.data(), v.data, out.size() * sizeof(float));
  return out;
}

TEST(Vae, GoldenMaskLogits) {
  auto vae = pg::tasks::VaeDecoder::load(kVae);
  ASSERT_TRUE(vae.ok()) << vae.status().message();
  EXPECT_EQ(vae->mask_size(), 64);
  EXPECT_EQ(vae->num_codes(), 16);
  EXPECT_EQ(vae->codebook_size(), 128);
  auto want = pg::io::SafetensorsFile::open(testdata("golden/tiny-vae/expected.safetensors"));
  ASSERT_TRUE(want.ok()) << want.status().message();
  const pg::TensorView& codes_view = want->tensors().at("codes");
  ASSERT_EQ(codes_view.dtype, pg::DType::kI32);
  const int64_t rows = codes_view.dim(0);
  std::vector<int32_t> codes(static_cast<size_t>(codes_view.numel()));
  std::memcpy(codes.data(), codes_view.data, codes.size() * sizeof(int32_t));
  const std::vector<float> logits = read_f32(want->tensors().at("mask_logits"));
  ASSERT_EQ(static_cast<int64_t>(logits.size()), rows * 64 * 64);
  double worst = 0;
  for (int64_t r = 0; r < rows; ++r) {
    std::vector<int> c(codes.begin() + r * 16, codes.begin() + (r + 1) * 16);
    const auto t0 = std::chrono::steady_clock::now();
    auto got = vae->decode(c);
    const double ms =
        std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t0).count();
    ASSERT_TRUE(got.ok()) << got.status().message();
    ASSERT_EQ(got->size(), 64u * 64u);
    EXPECT_TRUE(pg::testing::all_close(&logits[r * 4096], got->data(), 4096, 1e-4)) << "row " << r;
    worst = std::max(worst, pg::testing::max_abs_error(&logits[r * 4096], got->data(), 4096));
    std::printf("[ vae ] row %lld decoded in %.1f ms\n", static_cast<long long>(r), ms);
  }
  std::printf("[ vae ] max |error| over %lld code sequences: %.3g\n", static_cast<long long>(rows),
              worst);
}

TEST(Vae, DecodeRejectsBadCodes) {
  auto vae = pg::tasks::VaeDecoder::load(kVae);
  ASSERT_TRUE(vae.ok());
  auto few = vae->decode(std::vector<int>(15, 1));
  ASSERT_FALSE(few.ok());
  EXPECT_EQ(few.status().message(), "expected 16 mask codes, got 15");
  std::vector<int> codes(16, 3);
  codes[4] = 128;
  auto big = vae->decode(codes);
  ASSERT_FALSE(big.ok());
  EXPECT_EQ(big.status().message(),
            "mask code 128 (position 4) is outside the codebook of 128 entries");
  codes[4] = -1;
  EXPECT_FALSE(vae->decode(codes).ok());
}

// --- A decoder of other sizes, checked against plain loops in PyTorch's NCHW semantics. ---

struct Array {
  std::string name;
  pg::Shape shape;
  std::vector<float> data;
};

Array random_array(const std::string& name, pg::Shape shape, std::mt19937& rng, float scale) {
  std::uniform_real_distribution<float> u(-scale, scale);
  Array a{name, shape, std::vector<float>(static_cast<size_t>(pg::shape_numel(shape)))};
  for (float& v : a.data) v = u(rng);
  return a;
}

// Writes arrays as an .npz; `deflate` compresses the entries as np.savez_compressed does.
void write_npz(const std::string& path, const std::vector<Array>& arrays, bool deflate,
               const std::vector<std::pair<std::string, std::string>>& raw_entries = {}) {
  std::vector<std::string> buffers;
  buffers.reserve(arrays.size() + raw_entries.size());
  int err = 0;
  zip_t* z = zip_open(path.c_str(), ZIP_CREATE | ZIP_TRUNCATE, &err);
  ASSERT_NE(z, nullptr);
  auto add = [&](const std::string& name, std::string bytes) {
    buffers.push_back(std::move(bytes));
    zip_source_t* src = zip_source_buffer(z, buffers.back().data(), buffers.back().size(), 0);
    ASSERT_NE(src, nullptr);
    const zip_int64_t idx = zip_file_add(z, name.c_str(), src, ZIP_FL_OVERWRITE);
    ASSERT_GE(idx, 0);
    zip_set_file_compression(z, static_cast<zip_uint64_t>(idx),
                             deflate ? ZIP_CM_DEFLATE : ZIP_CM_STORE, 0);
  };
  for (const Array& a : arrays) add(a.name + ".npy", pg::io::encode_npy(a.data.data(), a.shape));
  for (const auto& [name, bytes] : raw_entries) add(name, bytes);
  ASSERT_EQ(zip_close(z), 0);
}

// x: [C, H, W] (NCHW without N)
struct Chw {
  int c = 0, h = 0, w = 0;
  std::vector<float> v;
  float& at(int ci, int y, int x) { return v[(static_cast<size_t>(ci) * h + y) * w + x]; }
};

// torch.nn.Conv2d(stride 1, padding k / 2) with weight [out, in, k, k].
Chw ref_conv(Chw& x, const Array& w, const Array& b) {
  const int out = static_cast<int>(w.shape[0]), in = static_cast<int>(w.shape[1]),
            k = static_cast<int>(w.shape[2]);
  Chw y{out, x.h, x.w, std::vector<float>(static_cast<size_t>(out) * x.h * x.w)};
  for (int o = 0; o < out; ++o)
    for (int yy = 0; yy < x.h; ++yy)
      for (int xx = 0; xx < x.w; ++xx) {
        double s = b.data[o];
        for (int i = 0; i < in; ++i)
          for (int ky = 0; ky < k; ++ky)
            for (int kx = 0; kx < k; ++kx) {
              const int iy = yy + ky - k / 2, ix = xx + kx - k / 2;
              if (iy < 0 || ix < 0 || iy >= x.h || ix >= x.w) continue;
              s += double{x.at(i, iy, ix)} *
                   w.data[((static_cast<size_t>(o) * in + i) * k + ky) * k + kx];
            }
        y.at(o, yy, xx) = static_cast<float>(s);
      }
  return y;
}

// torch.nn.ConvTranspose2d(stride 2, padding 1) with weight [in, out, k, k]:
// out[o, iy*2 - 1 + ky, ix*2 - 1 + kx] += x[i, iy, ix] * w[i, o, ky, kx].
Chw ref_conv_t(Chw& x, const Array& w, const Array& b) {
  const int in = static_cast<int>(w.shape[0]), out = static_cast<int>(w.shape[1]),
            k = static_cast<int>(w.shape[2]);
  const int ho = (x.h - 1) * 2 - 2 + k, wo = (x.w - 1) * 2 - 2 + k;
  std::vector<double> acc(static_cast<size_t>(out) * ho * wo);
  for (int o = 0; o < out; ++o)
    for (int p = 0; p < ho * wo; ++p) acc[static_cast<size_t>(o) * ho * wo + p] = b.data[o];
  for (int i = 0; i < in; ++i)
    for (int iy = 0; iy < x.h; ++iy)
      for (int ix = 0; ix < x.w; ++ix)
        for (int o = 0; o < out; ++o)
          for (int ky = 0; ky < k; ++ky)
            for (int kx = 0; kx < k; ++kx) {
              const int oy = iy * 2 - 1 + ky, ox = ix * 2 - 1 + kx;
              if (oy < 0 || ox < 0 || oy >= ho || ox >= wo) continue;
              acc[(static_cast<size_t>(o) * ho + oy) * wo + ox] +=
                  double{x.at(i, iy, ix)} *
                  w.data[((static_cast<size_t>(i) * out + o) * k + ky) * k + kx];
            }
  Chw y{out, ho, wo, std::vector<float>(acc.begin(), acc.end())};
  return y;
}

void relu(Chw& x) {
  for (float& v : x.v) v = std::max(v, 0.0f);
}

TEST(Vae, OtherSizesMatchAPlainReference) {
  // D = 8, codebook 10, channels 12 -> (1 residual block) -> 6 -> 3 -> 1: a 16x16 mask.
  std::mt19937 rng(3);
  const int D = 8, K = 10, C = 12;
  std::vector<Array> a = {
      random_array("_vq_vae._embedding", {K, D}, rng, 1.0f),
      random_array("decoder.0.weight", {C, D, 1, 1}, rng, 0.4f),
      random_array("decoder.0.bias", {C}, rng, 0.1f),
      random_array("decoder.2.net.0.weight", {C, C, 3, 3}, rng, 0.1f),
      random_array("decoder.2.net.0.bias", {C}, rng, 0.1f),
      random_array("decoder.2.net.2.weight", {C, C, 3, 3}, rng, 0.1f),
      random_array("decoder.2.net.2.bias", {C}, rng, 0.1f),
      random_array("decoder.2.net.4.weight", {C, C, 1, 1}, rng, 0.3f),
      random_array("decoder.2.net.4.bias", {C}, rng, 0.1f),
      random_array("decoder.3.weight", {C, 6, 4, 4}, rng, 0.2f),
      random_array("decoder.3.bias", {6}, rng, 0.1f),
      random_array("decoder.5.weight", {6, 3, 4, 4}, rng, 0.3f),
      random_array("decoder.5.bias", {3}, rng, 0.1f),
      random_array("decoder.7.weight", {1, 3, 1, 1}, rng, 0.5f),
      random_array("decoder.7.bias", {1}, rng, 0.1f),
      // An encoder, as in the full vae-oid.npz: ignored.
      random_array("encoder.0.weight", {4, 3, 3, 3}, rng, 0.1f),
  };
  TempDir tmp;
  for (bool deflate : {false, true}) {
    const std::string path = tmp.file(deflate ? "deflated.npz" : "stored.npz");
    write_npz(path, a, deflate);
    auto vae = pg::tasks::VaeDecoder::load(path);
    ASSERT_TRUE(vae.ok()) << vae.status().message();
    EXPECT_EQ(vae->mask_size(), 16);
    EXPECT_EQ(vae->codebook_size(), K);
    const std::vector<int> codes = {0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 9, 8, 7, 6, 5, 4};
    auto got = vae->decode(codes);
    ASSERT_TRUE(got.ok()) << got.status().message();

    auto find = [&a](const std::string& n) -> const Array& {
      for (const Array& x : a)
        if (x.name == n) return x;
      throw std::runtime_error(n);
    };
    Chw x{D, 4, 4, std::vector<float>(static_cast<size_t>(D) * 16)};
    for (int p = 0; p < 16; ++p)
      for (int d = 0; d < D; ++d)
        x.at(d, p / 4, p % 4) = find("_vq_vae._embedding").data[codes[p] * D + d];
    x = ref_conv(x, find("decoder.0.weight"), find("decoder.0.bias"));
    relu(x);
    Chw r = ref_conv(x, find("decoder.2.net.0.weight"), find("decoder.2.net.0.bias"));
    relu(r);
    r = ref_conv(r, find("decoder.2.net.2.weight"), find("decoder.2.net.2.bias"));
    relu(r);
    r = ref_conv(r, find("decoder.2.net.4.weight"), find("decoder.2.net.4.bias"));
    for (size_t i = 0; i < x.v.size(); ++i) x.v[i] += r.v[i];
    x = ref_conv_t(x, find("decoder.3.weight"), find("decoder.3.bias"));
    relu(x);
    x = ref_conv_t(x, find("decoder.5.weight"), find("decoder.5.bias"));
    relu(x);
    x = ref_conv(x, find("decoder.7.weight"), find("decoder.7.bias"));
    ASSERT_EQ(x.v.size(), got->size());
    EXPECT_TRUE(
        pg::testing::all_close(x.v.data(), got->data(), static_cast<int64_t>(x.v.size()), 1e-5));
  }
}

// --- Errors ---

std::string load_error(const std::string& path) {
  auto r = pg::tasks::VaeDecoder::load(path);
  return r.ok() ? "(loaded)" : r.status().message();
}

TEST(VaeErrors, MissingOrNotAZip) {
  EXPECT_THAT(load_error("/nonexistent/vae.npz"), HasSubstr("/nonexistent/vae.npz"));
  const std::string cfg = testdata("golden/tiny-pg1/config.json");
  EXPECT_THAT(load_error(cfg), HasSubstr(cfg + ": not a readable .npz (zip) archive"));
}

TEST(VaeErrors, TruncatedArchive) {
  TempDir tmp;
  std::ifstream in(kVae, std::ios::binary);
  std::string bytes((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  for (size_t keep : {bytes.size() / 2, bytes.size() - 10, size_t{30}}) {
    std::ofstream(tmp.file("cut.npz"), std::ios::binary)
        .write(bytes.data(), static_cast<std::streamsize>(keep));
    EXPECT_THAT(load_error(tmp.file("cut.npz")), HasSubstr(tmp.file("cut.npz"))) << keep;
  }
}

class VaeArrays : public ::testing::Test {
 protected:
  void SetUp() override {
    std::mt19937 rng(1);
    arrays_ = {random_array("_vq_vae._embedding", {4, 2}, rng, 1),
               random_array("decoder.0.weight", {3, 2, 1, 1}, rng, 1),
               random_array("decoder.0.bias", {3}, rng, 1),
               random_array("decoder.2.weight", {3, 2, 4, 4}, rng, 1),
               random_array("decoder.2.bias", {2}, rng, 1),
               random_array("decoder.4.weight", {1, 2, 1, 1}, rng, 1),
               random_array("decoder.4.bias", {1}, rng, 1)};
  }
  std::string error_with(const std::function<void(std::vector<Array>&)>& edit,
                         const std::vector<std::pair<std::string, std::string>>& raw = {}) {
    std::vector<Array> a = arrays_;
    edit(a);
    write_npz(tmp_.file("v.npz"), a, false, raw);
    return load_error(tmp_.file("v.npz"));
  }
  std::vector<Array> arrays_;
  TempDir tmp_;
};

TEST_F(VaeArrays, SmallValidDecoderLoads) {
  EXPECT_EQ(error_with([](std::vector<Array>&) {}), "(loaded)");
  auto vae = pg::tasks::VaeDecoder::load(tmp_.file("v.npz"));
  ASSERT_TRUE(vae.ok());
  EXPECT_EQ(vae->mask_size(), 8);
}

TEST_F(VaeArrays, MissingArray) {
  EXPECT_THAT(error_with([](std::vector<Array>& a) { a.pop_back(); }),
              HasSubstr("missing array 'decoder.4.bias'"));
  EXPECT_THAT(error_with([](std::vector<Array>& a) { a.erase(a.begin()); }),
              HasSubstr("missing array '_vq_vae._embedding'"));
}

TEST_F(VaeArrays, WrongShapes) {
  EXPECT_THAT(
      error_with([](std::vector<Array>& a) {
        a[3].shape = {2, 3, 4, 4};
      }),
      HasSubstr(
          "'decoder.2.weight' [2, 3, 4, 4] takes 2 input channels, but the layer before gives 3"));
  EXPECT_THAT(error_with([](std::vector<Array>& a) {
                a[4].shape = {3};
                a[4].data.push_back(0);
              }),
              HasSubstr("array 'decoder.2.bias' has shape [3], expected [2]"));
  EXPECT_THAT(error_with([](std::vector<Array>& a) {
                a[1].shape = {3, 2};
              }),
              HasSubstr("'decoder.0.weight' has shape [3, 2], expected 4 dimensions"));
  EXPECT_THAT(error_with([](std::vector<Array>& a) {
                a[5].shape = {2, 2, 1, 1};
                a[5].data.resize(4);
                a[6].shape = {2};
                a[6].data.resize(2);
              }),
              HasSubstr("the last layer 'decoder.4' must be a conv to 1 channel"));
}

TEST_F(VaeArrays, BadEntryBytes) {
  EXPECT_THAT(error_with([](std::vector<Array>&) {}, {{"decoder.9.weight.npy", "not an array"}}),
              HasSubstr("decoder.9.weight.npy: not a .npy array"));
}

TEST(Npz, ReadsOnlyWantedEntries) {
  auto all = pg::tasks::read_npz(kVae);
  ASSERT_TRUE(all.ok());
  EXPECT_EQ(all->size(), 25u);
  auto one = pg::tasks::read_npz(kVae, [](const std::string& k) { return k == "decoder.12.bias"; });
  ASSERT_TRUE(one.ok());
  ASSERT_EQ(one->size(), 1u);
  EXPECT_EQ(one->at("decoder.12.bias").shape, (pg::Shape{1}));
  pg::tasks::NpzLimits tight;
  tight.max_entry_bytes = 1000;
  auto limited = pg::tasks::read_npz(kVae, nullptr, tight);
  ASSERT_FALSE(limited.ok());
  EXPECT_THAT(limited.status().message(), HasSubstr("over the limit"));
}

}  // namespace
