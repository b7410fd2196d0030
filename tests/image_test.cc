// Tests of the image layer: golden pixel_values, the Pillow bicubic arithmetic, EXIF
// orientation, PNG/JPEG variants written here with libpng/libjpeg, and bad input.
#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <png.h>
#include <stdlib.h>
#include <unistd.h>
#include <zlib.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <random>
#include <string>
#include <vector>

// jpeglib.h needs size_t and FILE declared first.
#include <jpeglib.h>

#include "image/image.h"
#include "io/safetensors.h"

namespace pg::image {
namespace {

using ::testing::HasSubstr;
using Bytes = std::vector<uint8_t>;

const std::string kGolden = PG_TESTDATA_DIR "/golden";

Bytes read_bytes(const std::string& path) {
  std::ifstream f(path, std::ios::binary);
  EXPECT_TRUE(f.good()) << path;
  return Bytes(std::istreambuf_iterator<char>(f), {});
}

// A mkdtemp folder, removed with its contents at the end of the test.
class TempDir {
 public:
  TempDir() {
    std::string tmpl = (std::filesystem::temp_directory_path() / "pg_image_test.XXXXXX").string();
    EXPECT_NE(mkdtemp(tmpl.data()), nullptr);
    path_ = tmpl;
  }
  ~TempDir() { std::filesystem::remove_all(path_); }
  std::string write(const std::string& name, const Bytes& bytes) const {
    const std::string p = path_ + "/" + name;
    std::ofstream(p, std::ios::binary)
        .write(reinterpret_cast<const char*>(bytes.data()),
               static_cast<std::streamsize>(bytes.size()));
    return p;
  }
  const std::string& path() const { return path_; }

 private:
  std::string path_;
};

// One float32 tensor of a golden expected.safetensors.
std::vector<float> read_golden_f32(const std::string& path, const std::string& name) {
  auto file = io::SafetensorsFile::open(path);
  EXPECT_TRUE(file.ok()) << file.status().to_string();
  if (!file.ok()) return {};
  const auto it = file->tensors().find(name);
  EXPECT_NE(it, file->tensors().end()) << name << " not in " << path;
  if (it == file->tensors().end()) return {};
  EXPECT_EQ(it->second.dtype, DType::kF32) << name;
  std::vector<float> out(static_cast<size_t>(it->second.numel()));
  std::memcpy(out.data(), it->second.data, out.size() * sizeof(float));  // may be unaligned
  return out;
}

// Max |got - want|; on failure prints the worst index and both values.
float expect_close(const Tensor& got, const std::vector<float>& want, float tol,
                   const std::string& what) {
  EXPECT_EQ(got.numel(), static_cast<int64_t>(want.size())) << what;
  float worst = 0.0f;
  int64_t worst_i = 0;
  for (int64_t i = 0; i < got.numel() && i < static_cast<int64_t>(want.size()); ++i) {
    const float e = std::fabs(got.data()[i] - want[static_cast<size_t>(i)]);
    if (e > worst) worst = e, worst_i = i;
  }
  EXPECT_LE(worst, tol) << what << ": worst at flat index " << worst_i << " (channel "
                        << worst_i / (got.dim(1) * got.dim(2)) << "): got " << got.data()[worst_i]
                        << ", want " << want[worst_i];
  std::printf("[golden] %s: max |error| = %.3g (tolerance %.3g)\n", what.c_str(), worst, tol);
  return worst;
}

class GoldenTest : public ::testing::TestWithParam<const char*> {};

TEST_P(GoldenTest, PngMatchesPixelValues) {
  const std::string dir = kGolden + "/" + GetParam();
  auto img = load_image(dir + "/image.png");
  ASSERT_TRUE(img.ok()) << img.status().to_string();
  EXPECT_EQ(img->width, 97);
  EXPECT_EQ(img->height, 61);
  auto pv = preprocess(*img, 56);
  ASSERT_TRUE(pv.ok()) << pv.status().to_string();
  EXPECT_EQ(pv->shape(), (Shape{3, 56, 56}));
  expect_close(*pv, read_golden_f32(dir + "/expected.safetensors", "pixel_values"), 1e-5f,
               std::string(GetParam()) + " image.png");
}

TEST_P(GoldenTest, JpegMatchesPixelValuesJpg) {
  const std::string dir = kGolden + "/" + GetParam();
  auto img = load_image(dir + "/image.jpg");
  ASSERT_TRUE(img.ok()) << img.status().to_string();
  auto pv = preprocess(*img, 56);
  ASSERT_TRUE(pv.ok()) << pv.status().to_string();
  expect_close(*pv, read_golden_f32(dir + "/expected.safetensors", "pixel_values_jpg"),
               2.0f / 255.0f * 2.0f, std::string(GetParam()) + " image.jpg");
}

INSTANTIATE_TEST_SUITE_P(Cases, GoldenTest, ::testing::Values("tiny-pg1", "tiny-pg2"));

// ---------------------------------------------------------------------------------------
// Resize and normalisation.

Image make(int w, int h, const std::vector<uint8_t>& rgb) { return Image{w, h, rgb}; }

Image random_image(int w, int h, uint32_t seed) {
  std::mt19937 rng(seed);
  Image img{w, h, std::vector<uint8_t>(static_cast<size_t>(w) * h * 3)};
  for (auto& v : img.rgb) v = static_cast<uint8_t>(rng() & 0xff);
  return img;
}

TEST(Resize, ConstantImageStaysConstant) {
  Image in{13, 7, {}};
  for (int i = 0; i < 13 * 7; ++i) in.rgb.insert(in.rgb.end(), {17, 128, 250});
  for (auto [w, h] : {std::pair{5, 11}, {29, 3}, {13, 20}, {4, 7}, {1, 1}, {224, 224}}) {
    Image out = resize_bicubic(in, w, h);
    ASSERT_EQ(out.width, w);
    ASSERT_EQ(out.height, h);
    for (size_t i = 0; i < out.rgb.size(); i += 3) {
      ASSERT_EQ(out.rgb[i], 17);
      ASSERT_EQ(out.rgb[i + 1], 128);
      ASSERT_EQ(out.rgb[i + 2], 250);
    }
  }
}

TEST(Resize, SameSizeIsIdentity) {
  const Image in = random_image(23, 17, 1);
  EXPECT_EQ(resize_bicubic(in, 23, 17).rgb, in.rgb);
  // One axis kept: that pass is skipped; transposing the problem gives the same values.
  const Image row = random_image(9, 1, 2);
  Image col{1, 9, row.rgb};
  const Image a = resize_bicubic(row, 4, 1), b = resize_bicubic(col, 1, 4);
  EXPECT_EQ(a.rgb, b.rgb);
}

// 2x1 -> 4x1 (scale 0.5, filterscale 1, support 2), from SPEC section 4:
//   out 0: center 0.25, taps 0..1 at t = 0.25, 1.25: K = 111/128, -9/128 -> 37/34, -3/34
//          -> fixed 4564389.65 -> 4564390, -370085.65 -> -370086 (half away from zero)
//   out 1: center 0.75, t = -0.25, 0.75: K = 111/128, 29/128 -> 111/140, 29/140
//          -> 3325483.89 -> 3325484, 868820.11 -> 868820
//   out 2, 3: mirror images of out 1, 0.
// Pixels (100, 200): out 0 = (2^21 + 100*4564390 - 200*370086) >> 22 = 384518952 >> 22 = 91;
//   out 1 = (2^21 + 100*3325484 + 200*868820) >> 22 = 508409552 >> 22 = 121;
//   out 2 = (2^21 + 100*868820 + 200*3325484) >> 22 = 754075952 >> 22 = 179;
//   out 3 = (2^21 - 100*370086 + 200*4564390) >> 22 = 877966552 >> 22 = 209.
// Pixels (10, 200): out 0 = 2^21 + 45643900 - 74017200 < 0 -> clipped to 0;
//   out 1 = (2097152 + 33254840 + 173764000) = 209115992 >> 22 = 49;
//   out 2 = (2097152 + 8688200 + 665096800) = 675882152 >> 22 = 161;
//   out 3 = (2097152 - 3700860 + 912878000) = 911274292 >> 22 = 217.
// Pixels (255, 0): out 0 = (2^21 + 255*4564390) >> 22 = 278 -> clipped to 255;
//   out 1 = (2^21 + 255*3325484) >> 22 = 202; out 2 = 53; out 3 = 2^21 - 255*370086 < 0 -> 0.
TEST(Resize, EnlargeTwoToFourByHand) {
  const Image in = make(2, 1, {100, 10, 255, 200, 200, 0});
  const Image out = resize_bicubic(in, 4, 1);
  ASSERT_EQ(out.width, 4);
  EXPECT_EQ(out.rgb, (Bytes{91, 0, 255, 121, 49, 202, 179, 161, 53, 209, 217, 0}));
}

// 4x1 -> 2x1 (scale 2, filterscale 2, support 4, taps at t = (x - center + 0.5) / 2):
//   out 0: center 1, taps 0..3 at t = -0.25, 0.25, 0.75, 1.25:
//          K = 111, 111, 29, -9 (/128), sum 242/128 -> 111/242, 111/242, 29/242, -9/242
//          -> fixed 1923833.65 -> 1923834 (twice), 502623.21 -> 502623, -155986.51 -> -155987
//   out 1: center 3, taps 0..3 at t = -1.25, -0.75, -0.25, 0.25: the same weights reversed.
// Pixels (0, 100, 200, 255): out 0 = (2^21 + 100*1923834 + 200*502623 - 255*155987) >> 22
//   = 255228467 >> 22 = 60; out 1 = (2^21 + 100*502623 + 200*1923834 + 255*1923834) >> 22
//   = 927703922 >> 22 = 221.
// Pixels (255, 0, 255, 0): out 0 = (2^21 + 255*(1923834 + 502623)) >> 22 = 148;
//   out 1 = (2^21 + 255*(-155987 + 1923834)) >> 22 = 107.
TEST(Resize, ShrinkFourToTwoByHand) {
  const Image in = make(4, 1, {0, 255, 7, 100, 0, 7, 200, 255, 7, 255, 0, 7});
  const Image out = resize_bicubic(in, 2, 1);
  EXPECT_EQ(out.rgb, (Bytes{60, 148, 7, 221, 107, 7}));
  // The vertical pass uses the same coefficients.
  const Image col = resize_bicubic(make(1, 4, in.rgb), 1, 2);
  EXPECT_EQ(col.rgb, out.rgb);
}

TEST(PixelValues, ScaleAndLayout) {
  const Image img = make(2, 1, {0, 255, 51, 255, 0, 102});
  const Tensor t = to_pixel_values(img);
  ASSERT_EQ(t.shape(), (Shape{3, 1, 2}));
  const float want[] = {-1.0f, 1.0f, 1.0f, -1.0f, 51 / 255.0f * 2 - 1, 102 / 255.0f * 2 - 1};
  for (int i = 0; i < 6; ++i) EXPECT_NEAR(t.data()[i], want[i], 1e-6f) << i;
}

TEST(PixelValues, PreprocessChecksSize) {
  const Image img = random_image(5, 4, 3);
  EXPECT_FALSE(preprocess(img, 0).ok());
  EXPECT_THAT(preprocess(img, -3).status().message(), HasSubstr("size must be positive"));
  EXPECT_FALSE(preprocess(Image{}, 8).ok());
  auto same = preprocess(random_image(8, 8, 4), 8);
  ASSERT_TRUE(same.ok());
  EXPECT_EQ(same->shape(), (Shape{3, 8, 8}));
}

// ---------------------------------------------------------------------------------------
// Encoders used to build inputs.

struct JpegOptions {
  J_COLOR_SPACE space = JCS_RGB;
  int components = 3;
  int quality = 95;
  bool progressive = false;
  bool subsample = false;
  Bytes app1;  // written after the JFIF header when not empty
};

Bytes encode_jpeg(int w, int h, const Bytes& pixels, const JpegOptions& o) {
  jpeg_compress_struct c;
  jpeg_error_mgr err;
  c.err = jpeg_std_error(&err);
  jpeg_create_compress(&c);
  unsigned char* buf = nullptr;
  unsigned long size = 0;
  jpeg_mem_dest(&c, &buf, &size);
  c.image_width = static_cast<JDIMENSION>(w);
  c.image_height = static_cast<JDIMENSION>(h);
  c.input_components = o.components;
  c.in_color_space = o.space;
  jpeg_set_defaults(&c);
  jpeg_set_quality(&c, o.quality, TRUE);
  if (!o.subsample) {
    for (int i = 0; i < c.num_components; ++i) {
      c.comp_info[i].h_samp_factor = c.comp_info[i].v_samp_factor = 1;
    }
  }
  if (o.progressive) jpeg_simple_progression(&c);
  jpeg_start_compress(&c, TRUE);
  if (!o.app1.empty()) {
    jpeg_write_marker(&c, JPEG_APP0 + 1, o.app1.data(), static_cast<unsigned>(o.app1.size()));
  }
  while (c.next_scanline < c.image_height) {
    JSAMPROW row = const_cast<uint8_t*>(&pixels[c.next_scanline * w * o.components]);
    jpeg_write_scanlines(&c, &row, 1);
  }
  jpeg_finish_compress(&c);
  jpeg_destroy_compress(&c);
  Bytes out(buf, buf + size);
  free(buf);
  return out;
}

// An APP1 payload: "Exif\0\0" and a TIFF header with one IFD0 entry, Orientation (0x0112,
// SHORT, count 1), in little-endian ("II") or big-endian ("MM") byte order.
Bytes exif_app1(int orientation, bool big_endian) {
  const uint8_t o = static_cast<uint8_t>(orientation);
  Bytes b = {'E', 'x', 'i', 'f', 0, 0};
  const Bytes le = {'I',  'I',  0x2A, 0, 8, 0, 0, 0,              // header, IFD0 at offset 8
                    1,    0,                                      // one entry
                    0x12, 0x01, 3,    0, 1, 0, 0, 0, o, 0, 0, 0,  // tag, SHORT, count, value
                    0,    0,    0,    0};                         // no next IFD
  const Bytes be = {'M', 'M', 0, 0x2A, 0, 0, 0, 8, 0, 1, 0x01, 0x12, 0,
                    3,   0,   0, 0,    1, 0, o, 0, 0, 0, 0,    0,    0};
  const Bytes& t = big_endian ? be : le;
  b.insert(b.end(), t.begin(), t.end());
  return b;
}

struct PngSpec {
  int width = 0, height = 0, depth = 8, color_type = PNG_COLOR_TYPE_RGB;
  bool interlace = false;
  std::vector<Bytes> rows;  // packed, 16-bit samples big-endian
  std::vector<png_color> palette;
  Bytes trans_alpha;  // palette tRNS
};

void png_write_to_vector(png_structp png, png_bytep data, size_t n) {
  auto* out = static_cast<Bytes*>(png_get_io_ptr(png));
  out->insert(out->end(), data, data + n);
}

Bytes encode_png(const PngSpec& s) {
  Bytes out;
  png_structp png = png_create_write_struct(PNG_LIBPNG_VER_STRING, nullptr, nullptr, nullptr);
  png_infop info = png_create_info_struct(png);
  png_set_write_fn(png, &out, png_write_to_vector, nullptr);
  png_set_IHDR(png, info, s.width, s.height, s.depth, s.color_type,
               s.interlace ? PNG_INTERLACE_ADAM7 : PNG_INTERLACE_NONE, PNG_COMPRESSION_TYPE_DEFAULT,
               PNG_FILTER_TYPE_DEFAULT);
  if (!s.palette.empty()) {
    png_set_PLTE(png, info, s.palette.data(), static_cast<int>(s.palette.size()));
  }
  if (!s.trans_alpha.empty()) {
    png_set_tRNS(png, info, s.trans_alpha.data(), static_cast<int>(s.trans_alpha.size()), nullptr);
  }
  png_write_info(png, info);
  std::vector<png_bytep> rows;
  for (const Bytes& r : s.rows) rows.push_back(const_cast<png_bytep>(r.data()));
  png_write_image(png, rows.data());
  png_write_end(png, nullptr);
  png_destroy_write_struct(&png, &info);
  return out;
}

// A PNG chunk with its CRC (zlib's crc32 over type and data).
Bytes png_chunk(const char* type, const Bytes& data) {
  Bytes c;
  const uint32_t n = static_cast<uint32_t>(data.size());
  c.insert(c.end(), {uint8_t(n >> 24), uint8_t(n >> 16), uint8_t(n >> 8), uint8_t(n)});
  c.insert(c.end(), type, type + 4);
  c.insert(c.end(), data.begin(), data.end());
  const uint32_t crc = static_cast<uint32_t>(crc32(crc32(0, nullptr, 0), c.data() + 4, n + 4));
  c.insert(c.end(), {uint8_t(crc >> 24), uint8_t(crc >> 16), uint8_t(crc >> 8), uint8_t(crc)});
  return c;
}

Bytes png_header_only(uint32_t w, uint32_t h) {
  Bytes b = {0x89, 'P', 'N', 'G', 0x0D, 0x0A, 0x1A, 0x0A};
  const Bytes ihdr = {uint8_t(w >> 24),
                      uint8_t(w >> 16),
                      uint8_t(w >> 8),
                      uint8_t(w),
                      uint8_t(h >> 24),
                      uint8_t(h >> 16),
                      uint8_t(h >> 8),
                      uint8_t(h),
                      8,
                      2,
                      0,
                      0,
                      0};
  const Bytes chunk = png_chunk("IHDR", ihdr);
  b.insert(b.end(), chunk.begin(), chunk.end());
  return b;
}

// Offset of the SOF0 marker (FF C0: length, precision, height, width, all big-endian).
size_t find_sof0(const Bytes& jpg) {
  const uint8_t marker[] = {0xFF, 0xC0};
  return static_cast<size_t>(std::search(jpg.begin(), jpg.end(), marker, marker + 2) - jpg.begin());
}

Result<Image> decode(const Bytes& b, const std::string& name = "test.img") {
  return decode_image(b.data(), b.size(), name);
}

void expect_pixels(const Result<Image>& r, int w, int h, const Bytes& rgb) {
  ASSERT_TRUE(r.ok()) << r.status().to_string();
  EXPECT_EQ(r->width, w);
  EXPECT_EQ(r->height, h);
  EXPECT_EQ(r->rgb, rgb);
}

// ---------------------------------------------------------------------------------------
// EXIF orientation.

// A 32x16 grey picture with a red 8x8 block in its top-left corner and a green one in its
// top-right corner; each orientation must move them where Pillow's exif_transpose does.
struct OrientationCase {
  int orientation;
  bool big_endian;
  const char* red;    // corner of the red block after the transform: TL, TR, BL, BR
  const char* green;  // corner of the green block
  int width, height;
};

class OrientationTest : public ::testing::TestWithParam<OrientationCase> {};

TEST_P(OrientationTest, MovesCornersLikePillow) {
  const OrientationCase& p = GetParam();
  const int w = 32, h = 16;
  Bytes px(static_cast<size_t>(w) * h * 3, 128);
  for (int y = 0; y < 8; ++y) {
    for (int x = 0; x < 8; ++x) {
      uint8_t* red = &px[(y * w + x) * 3];
      uint8_t* green = &px[(y * w + (w - 8 + x)) * 3];
      red[0] = 255, red[1] = 0, red[2] = 0;
      green[0] = 0, green[1] = 255, green[2] = 0;
    }
  }
  JpegOptions o;
  o.app1 = exif_app1(p.orientation, p.big_endian);
  auto img = decode(encode_jpeg(w, h, px, o));
  ASSERT_TRUE(img.ok()) << img.status().to_string();
  ASSERT_EQ(img->width, p.width);
  ASSERT_EQ(img->height, p.height);
  auto at = [&](const std::string& corner) {
    const int x = corner[1] == 'L' ? 4 : img->width - 5;
    const int y = corner[0] == 'T' ? 4 : img->height - 5;
    const uint8_t* q = &img->rgb[(static_cast<size_t>(y) * img->width + x) * 3];
    if (q[0] > 200 && q[1] < 60 && q[2] < 60) return std::string("red");
    if (q[0] < 60 && q[1] > 200 && q[2] < 60) return std::string("green");
    if (std::abs(q[0] - 128) < 20 && std::abs(q[1] - 128) < 20) return std::string("grey");
    return std::string("other");
  };
  EXPECT_EQ(at(p.red), "red");
  EXPECT_EQ(at(p.green), "green");
  int grey = 0;
  for (const char* c : {"TL", "TR", "BL", "BR"}) grey += at(c) == "grey";
  EXPECT_EQ(grey, 2);
}

INSTANTIATE_TEST_SUITE_P(
    AllTags, OrientationTest,
    ::testing::Values(OrientationCase{1, false, "TL", "TR", 32, 16},
                      OrientationCase{2, false, "TR", "TL", 32, 16},  // mirror horizontally
                      OrientationCase{3, false, "BR", "BL", 32, 16},  // rotate 180
                      OrientationCase{4, false, "BL", "BR", 32, 16},  // flip vertically
                      OrientationCase{5, false, "TL", "BL", 16, 32},  // transpose
                      OrientationCase{6, false, "TR", "BR", 16, 32},  // 90 clockwise
                      OrientationCase{6, true, "TR", "BR", 16, 32},   // same, big-endian TIFF
                      OrientationCase{7, false, "BR", "TR", 16, 32},  // transverse
                      OrientationCase{8, false, "BL", "TL", 16, 32},  // 90 counter-clockwise
                      OrientationCase{0, false, "TL", "TR", 32, 16},  // invalid: ignored
                      OrientationCase{9, false, "TL", "TR", 32, 16}));

// ---------------------------------------------------------------------------------------
// PNG variants, converted to RGB as Pillow's convert("RGB") does.

TEST(Png, PaletteWithTransparency) {
  PngSpec s;
  s.width = 3, s.height = 2, s.depth = 4, s.color_type = PNG_COLOR_TYPE_PALETTE;
  s.palette = {{10, 20, 30}, {200, 100, 50}, {0, 255, 0}};
  s.trans_alpha = {0, 128};               // alpha is dropped, never composited
  s.rows = {{0x01, 0x20}, {0x21, 0x00}};  // indices 0 1 2 / 2 1 0, 4 bits each
  expect_pixels(decode(encode_png(s)), 3, 2,
                {10, 20, 30, 200, 100, 50, 0, 255, 0, 0, 255, 0, 200, 100, 50, 10, 20, 30});
}

TEST(Png, GreyLowBitDepths) {
  PngSpec s;
  s.width = 4, s.height = 1, s.depth = 2, s.color_type = PNG_COLOR_TYPE_GRAY;
  s.rows = {{0x1B}};  // 0 1 2 3 -> scaled by 85
  expect_pixels(decode(encode_png(s)), 4, 1, {0, 0, 0, 85, 85, 85, 170, 170, 170, 255, 255, 255});
  s.depth = 1;
  s.rows = {{0xA0}};  // 1 0 1 0
  expect_pixels(decode(encode_png(s)), 4, 1, {255, 255, 255, 0, 0, 0, 255, 255, 255, 0, 0, 0});
}

TEST(Png, Grey8AndGreyAlpha) {
  PngSpec s;
  s.width = 2, s.height = 1, s.color_type = PNG_COLOR_TYPE_GRAY;
  s.rows = {{7, 250}};
  expect_pixels(decode(encode_png(s)), 2, 1, {7, 7, 7, 250, 250, 250});
  s.color_type = PNG_COLOR_TYPE_GRAY_ALPHA;
  s.rows = {{7, 0, 250, 255}};
  expect_pixels(decode(encode_png(s)), 2, 1, {7, 7, 7, 250, 250, 250});
}

TEST(Png, SixteenBit) {
  PngSpec s;
  s.width = 2, s.height = 1, s.depth = 16, s.color_type = PNG_COLOR_TYPE_RGB;
  s.rows = {{0x12, 0xFF, 0x34, 0x00, 0xFF, 0xFF, 0x00, 0x80, 0x01, 0x00, 0xAB, 0xCD}};
  expect_pixels(decode(encode_png(s)), 2, 1, {0x12, 0x34, 0xFF, 0x00, 0x01, 0xAB});  // high bytes
  s.color_type = PNG_COLOR_TYPE_RGB_ALPHA;
  s.width = 1;
  s.rows = {{0x12, 0xFF, 0x34, 0x00, 0xFF, 0xFF, 0x00, 0x00}};
  expect_pixels(decode(encode_png(s)), 1, 1, {0x12, 0x34, 0xFF});
  s.color_type = PNG_COLOR_TYPE_GRAY_ALPHA;  // Pillow: rawmode LA;16B, high byte
  s.rows = {{0xAB, 0xCD, 0x00, 0x00}};
  expect_pixels(decode(encode_png(s)), 1, 1, {0xAB, 0xAB, 0xAB});
  // 16-bit grey opens as Pillow mode "I"; I -> RGB clamps the value to 0..255.
  s.color_type = PNG_COLOR_TYPE_GRAY;
  s.width = 4;
  s.rows = {{0x00, 0x12, 0x00, 0xFF, 0x01, 0x00, 0xAB, 0xCD}};
  expect_pixels(decode(encode_png(s)), 4, 1,
                {0x12, 0x12, 0x12, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF});
}

TEST(Png, RgbaDropsAlphaAndInterlacedMatches) {
  PngSpec s;
  s.width = 2, s.height = 1, s.color_type = PNG_COLOR_TYPE_RGB_ALPHA;
  s.rows = {{1, 2, 3, 0, 250, 251, 252, 77}};
  expect_pixels(decode(encode_png(s)), 2, 1, {1, 2, 3, 250, 251, 252});

  const Image ref = random_image(13, 11, 5);
  PngSpec i;
  i.width = 13, i.height = 11, i.color_type = PNG_COLOR_TYPE_RGB, i.interlace = true;
  for (int y = 0; y < 11; ++y) i.rows.emplace_back(&ref.rgb[y * 39], &ref.rgb[y * 39] + 39);
  expect_pixels(decode(encode_png(i)), 13, 11, ref.rgb);
}

// ---------------------------------------------------------------------------------------
// JPEG variants.

TEST(Jpeg, GreyscaleBecomesRgb) {
  Bytes px(16 * 8);
  for (size_t i = 0; i < px.size(); ++i) px[i] = static_cast<uint8_t>(40 + i % 16 * 10);
  JpegOptions o;
  o.space = JCS_GRAYSCALE, o.components = 1, o.quality = 100;
  auto img = decode(encode_jpeg(16, 8, px, o));
  ASSERT_TRUE(img.ok()) << img.status().to_string();
  for (size_t i = 0; i < px.size(); ++i) {
    EXPECT_EQ(img->rgb[i * 3], img->rgb[i * 3 + 1]);
    EXPECT_EQ(img->rgb[i * 3], img->rgb[i * 3 + 2]);
    EXPECT_NEAR(img->rgb[i * 3], px[i], 2) << i;
  }
}

// Pillow reads 4-component JPEGs as inverted CMYK ("CMYK;I") and converts with
// R = nk - MULDIV255(C, nk), nk = 255 - K; with stored values s: C = 255 - s0, nk = s3.
TEST(Jpeg, CmykConvertedAsPillow) {
  const uint8_t stored[3][4] = {{0, 255, 255, 255}, {255, 255, 255, 128}, {128, 255, 255, 200}};
  const uint8_t want[3][3] = {{0, 255, 255}, {128, 128, 128}, {100, 200, 200}};
  for (int k = 0; k < 3; ++k) {
    Bytes px;
    for (int i = 0; i < 16 * 16; ++i) px.insert(px.end(), stored[k], stored[k] + 4);
    JpegOptions o;
    o.space = JCS_CMYK, o.components = 4, o.quality = 100;
    auto img = decode(encode_jpeg(16, 16, px, o));
    ASSERT_TRUE(img.ok()) << img.status().to_string();
    for (int c = 0; c < 3; ++c) EXPECT_NEAR(img->rgb[(8 * 16 + 8) * 3 + c], want[k][c], 3);
  }
}

TEST(Jpeg, ProgressiveDecodesAndTruncationIsAnError) {
  const Image ref = random_image(40, 24, 6);
  JpegOptions base, prog;
  prog.progressive = true;
  auto a = decode(encode_jpeg(40, 24, ref.rgb, base));
  const Bytes pj = encode_jpeg(40, 24, ref.rgb, prog);
  auto b = decode(pj);
  ASSERT_TRUE(a.ok() && b.ok());
  int worst = 0;
  for (size_t i = 0; i < a->rgb.size(); ++i)
    worst = std::max(worst, std::abs(a->rgb[i] - b->rgb[i]));
  EXPECT_LE(worst, 2);
  auto cut = decode(Bytes(pj.begin(), pj.begin() + static_cast<ptrdiff_t>(pj.size() * 6 / 10)));
  ASSERT_FALSE(cut.ok());
  EXPECT_THAT(cut.status().message(), HasSubstr("truncated JPEG"));
}

// ---------------------------------------------------------------------------------------
// Bad input.

TEST(BadInput, NotAnImage) {
  TempDir dir;
  const std::string text = dir.write("notes.txt", Bytes{'h', 'e', 'l', 'l', 'o', '\n'});
  auto r = load_image(text);
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.status().code(), StatusCode::kInvalidArgument);
  EXPECT_THAT(r.status().message(), HasSubstr(text + ": not a JPEG or PNG image"));
  EXPECT_THAT(r.status().message(), HasSubstr("first bytes: 68 65 6c 6c 6f 0a"));
  auto empty = decode(Bytes{}, "empty.png");
  ASSERT_FALSE(empty.ok());
  EXPECT_THAT(empty.status().message(), HasSubstr("empty.png: not a JPEG or PNG image"));
  EXPECT_FALSE(decode(Bytes{0xFF, 0xD8}).ok());  // too short for the magic
}

TEST(BadInput, TruncatedJpegAndPng) {
  const Bytes jpg = read_bytes(kGolden + "/tiny-pg1/image.jpg");
  auto j =
      decode(Bytes(jpg.begin(), jpg.begin() + static_cast<ptrdiff_t>(jpg.size() / 2)), "half.jpg");
  ASSERT_FALSE(j.ok());
  EXPECT_EQ(j.status().code(), StatusCode::kDataLoss);
  EXPECT_THAT(j.status().message(), HasSubstr("half.jpg: truncated JPEG"));
  const Bytes png = read_bytes(kGolden + "/tiny-pg1/image.png");
  auto p =
      decode(Bytes(png.begin(), png.begin() + static_cast<ptrdiff_t>(png.size() / 2)), "half.png");
  ASSERT_FALSE(p.ok());
  EXPECT_EQ(p.status().code(), StatusCode::kDataLoss);
  EXPECT_THAT(p.status().message(), HasSubstr("half.png: truncated PNG"));
  // Cut inside the header, too.
  EXPECT_THAT(decode(Bytes(jpg.begin(), jpg.begin() + 100), "h.jpg").status().message(),
              HasSubstr("h.jpg: truncated JPEG"));
  EXPECT_THAT(decode(Bytes(png.begin(), png.begin() + 20), "h.png").status().message(),
              HasSubstr("h.png: truncated PNG"));
}

TEST(BadInput, ZeroSizedHeaders) {
  auto p = decode(png_header_only(0, 0), "zero.png");
  ASSERT_FALSE(p.ok());
  EXPECT_THAT(p.status().message(), HasSubstr("zero.png: image has zero width or height"));
  Bytes jpg = read_bytes(kGolden + "/tiny-pg1/image.jpg");
  const size_t sof = find_sof0(jpg);
  ASSERT_LT(sof, jpg.size());
  jpg[sof + 5] = jpg[sof + 6] = 0;  // height 0
  auto j = decode(jpg, "zero.jpg");
  ASSERT_FALSE(j.ok());
  EXPECT_THAT(j.status().message(), HasSubstr("zero.jpg: image has zero width or height"));
}

TEST(BadInput, CorruptDataIsAnErrorOrDecodes) {
  // A damaged IDAT chunk fails libpng's CRC check.
  Bytes png = read_bytes(kGolden + "/tiny-pg1/image.png");
  const uint8_t idat[] = {'I', 'D', 'A', 'T'};
  const size_t at =
      static_cast<size_t>(std::search(png.begin(), png.end(), idat, idat + 4) - png.begin());
  ASSERT_LT(at + 20, png.size());
  png[at + 10] ^= 0x55;
  auto p = decode(png, "crc.png");
  ASSERT_FALSE(p.ok());
  EXPECT_THAT(p.status().message(), HasSubstr("crc.png: cannot decode PNG"));
  // Garbage EXIF is ignored, as a missing orientation tag is.
  JpegOptions o;
  o.app1 = {'E', 'x', 'i', 'f', 0, 0, 'M', 'M', 0, 0x2A, 0xFF, 0xFF, 0xFF, 0xF0, 1, 2, 3};
  const Image ref = random_image(8, 4, 7);
  auto j = decode(encode_jpeg(8, 4, ref.rgb, o));
  ASSERT_TRUE(j.ok()) << j.status().to_string();
  EXPECT_EQ(j->width, 8);
}

// Rewrites every chunk's CRC so that damage inside chunks reaches libpng's parsers.
void fix_png_crcs(Bytes* b) {
  size_t at = 8;
  while (at + 12 <= b->size()) {
    const uint32_t n =
        (uint32_t{(*b)[at]} << 24) | ((*b)[at + 1] << 16) | ((*b)[at + 2] << 8) | (*b)[at + 3];
    if (n > b->size() - at - 12) return;
    const uint32_t crc = static_cast<uint32_t>(crc32(crc32(0, nullptr, 0), &(*b)[at + 4], n + 4));
    for (int i = 0; i < 4; ++i) (*b)[at + 8 + n + i] = static_cast<uint8_t>(crc >> (24 - 8 * i));
    at += 12 + n;
  }
}

// Random byte damage must give an image or an error, never a crash or a leak (run this
// under -DPG_SANITIZE=ON).
TEST(BadInput, RandomDamageNeverCrashes) {
  std::mt19937 rng(1234);
  const DecodeLimits small{1'000'000, 4000};
  for (const char* file : {"image.jpg", "image.png"}) {
    const Bytes good = read_bytes(kGolden + "/tiny-pg1/" + file);
    int failures = 0;
    for (int iter = 0; iter < 300; ++iter) {
      Bytes b = good;
      const int flips = 1 + static_cast<int>(rng() % 8);
      for (int f = 0; f < flips; ++f) {
        b[3 + rng() % (b.size() - 3)] = static_cast<uint8_t>(rng());  // keep the magic
      }
      if (file[6] == 'p' && rng() % 2 == 0) fix_png_crcs(&b);  // reach past the CRC checks
      if (rng() % 4 == 0) b.resize(3 + rng() % (b.size() - 3));
      auto r = decode_image(b.data(), b.size(), file, small);
      if (!r.ok()) {
        ++failures;
        EXPECT_THAT(r.status().message(), HasSubstr(file));
      } else {
        EXPECT_EQ(r->rgb.size(), static_cast<size_t>(r->width) * r->height * 3);
      }
    }
    std::printf("[fuzz] %s: %d of 300 damaged copies refused\n", file, failures);
  }
}

TEST(BadInput, DecompressionBombsRefusedFromHeader) {
  const auto start = std::chrono::steady_clock::now();
  auto p = decode(png_header_only(40000, 40000), "bomb.png");
  ASSERT_FALSE(p.ok());
  EXPECT_EQ(p.status().code(), StatusCode::kOutOfRange);
  EXPECT_THAT(p.status().message(), HasSubstr("bomb.png: image is 40000x40000"));
  EXPECT_THAT(p.status().message(), HasSubstr("30000"));

  Bytes jpg = read_bytes(kGolden + "/tiny-pg1/image.jpg");
  const size_t sof = find_sof0(jpg);
  ASSERT_LT(sof, jpg.size());
  jpg[sof + 5] = jpg[sof + 7] = 0x9C;  // height and width 0x9C40 = 40000
  jpg[sof + 6] = jpg[sof + 8] = 0x40;
  auto j = decode(jpg, "bomb.jpg");
  ASSERT_FALSE(j.ok());
  EXPECT_EQ(j.status().code(), StatusCode::kOutOfRange);
  EXPECT_THAT(j.status().message(), HasSubstr("bomb.jpg: image is 40000x40000"));
  const double secs =
      std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  EXPECT_LT(secs, 0.5);

  // Caller-chosen limits: 97x61 = 5917 pixels.
  const Bytes png = read_bytes(kGolden + "/tiny-pg1/image.png");
  EXPECT_FALSE(decode_image(png.data(), png.size(), "x", DecodeLimits{5916, 1000}).ok());
  EXPECT_FALSE(decode_image(png.data(), png.size(), "x", DecodeLimits{10000, 96}).ok());
  EXPECT_TRUE(decode_image(png.data(), png.size(), "x", DecodeLimits{5917, 97}).ok());
  const Bytes jpg0 = read_bytes(kGolden + "/tiny-pg1/image.jpg");
  EXPECT_FALSE(decode_image(jpg0.data(), jpg0.size(), "x", DecodeLimits{5916, 1000}).ok());
  EXPECT_TRUE(decode_image(jpg0.data(), jpg0.size(), "x", DecodeLimits{5917, 97}).ok());
}

TEST(BadInput, Files) {
  auto missing = load_image("/nonexistent/dir/cat.jpg");
  ASSERT_FALSE(missing.ok());
  EXPECT_EQ(missing.status().code(), StatusCode::kNotFound);
  EXPECT_THAT(missing.status().message(), HasSubstr("/nonexistent/dir/cat.jpg"));
  TempDir dir;
  EXPECT_THAT(load_image(dir.path()).status().message(), HasSubstr("not a regular file"));
  // A sparse file over 512 MB is refused before it is read.
  const std::string big = dir.write("big.jpg", Bytes{0xFF, 0xD8, 0xFF});
  ASSERT_EQ(truncate(big.c_str(), (int64_t{512} << 20) + 1), 0);
  auto r = load_image(big);
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.status().code(), StatusCode::kOutOfRange);
  EXPECT_THAT(r.status().message(), HasSubstr("512 MB"));
}

}  // namespace
}  // namespace pg::image
