// Pillow 9.x Image.resize(size, Image.BICUBIC) for 8-bit RGB, transcribed from Pillow's
// libImaging/Resample.c (ImagingResampleInner, precompute_coeffs, normalize_coeffs_8bpc,
// ImagingResampleHorizontal_8bpc / Vertical_8bpc) and SPEC section 4. Every step below is
// done in the same order and the same arithmetic types as Pillow, so the result is
// bit-identical:
//   - per axis: scale = in / out, filterscale = max(scale, 1), support = 2 * filterscale;
//   - output i: center = (i + 0.5) * scale, taps xmin = max((int)(center - support + 0.5), 0)
//     .. xmax = min((int)(center + support + 0.5), in), weight of tap x =
//     K((x - center + 0.5) * (1 / filterscale)), weights divided by their sum (in double);
//   - weights to fixed point with 22 fractional bits, rounded half away from zero;
//   - pixel = clip8((2^21 + sum(pixel * weight)) >> 22), accumulated in a 32-bit int;
//   - the horizontal pass (into an 8-bit temporary image) then the vertical pass; a pass is
//     skipped when its axis keeps its size.
#include <cmath>
#include <cstdint>
#include <vector>

#include "image/image.h"

namespace pg::image {
namespace {

constexpr int kPrecisionBits = 32 - 8 - 2;  // 22
constexpr double kBicubicSupport = 2.0;

// Keys' cubic convolution kernel with a = -0.5 (Pillow's bicubic_filter).
double bicubic_filter(double x) {
  constexpr double a = -0.5;
  if (x < 0.0) x = -x;
  if (x < 1.0) return ((a + 2.0) * x - (a + 3.0)) * x * x + 1;
  if (x < 2.0) return (((x - 5) * x + 8) * x - 4) * a;
  return 0.0;
}

// Pillow's clip8: the accumulator holds the value times 2^22.
inline uint8_t clip8(int32_t in) {
  if (in >= (1 << kPrecisionBits << 8)) return 255;
  if (in <= 0) return 0;
  return static_cast<uint8_t>(in >> kPrecisionBits);
}

// Coefficients of one axis: output i reads input taps bounds[2i] .. bounds[2i] + bounds[2i+1]
// - 1 with fixed-point weights kk[i * ksize + 0 ..].
struct AxisCoeffs {
  int ksize = 0;
  std::vector<int> bounds;  // [out_size * 2]: xmin, count
  std::vector<int32_t> kk;  // [out_size * ksize]
};

// precompute_coeffs (with box = [0, in_size]) followed by normalize_coeffs_8bpc.
AxisCoeffs precompute_coeffs(int in_size, int out_size) {
  const float in0 = 0.0f, in1 = static_cast<float>(in_size);  // Pillow's box is float
  double filterscale = static_cast<double>(in1 - in0) / out_size;
  const double scale = filterscale;
  if (filterscale < 1.0) filterscale = 1.0;
  const double support = kBicubicSupport * filterscale;
  const int ksize = static_cast<int>(std::ceil(support)) * 2 + 1;

  AxisCoeffs c;
  c.ksize = ksize;
  c.bounds.resize(static_cast<size_t>(out_size) * 2);
  std::vector<double> kk(static_cast<size_t>(out_size) * ksize, 0.0);
  for (int xx = 0; xx < out_size; ++xx) {
    const double center = in0 + (xx + 0.5) * scale;
    double ww = 0.0;
    const double ss = 1.0 / filterscale;
    int xmin = static_cast<int>(center - support + 0.5);  // truncation toward zero, as in C
    if (xmin < 0) xmin = 0;
    int xmax = static_cast<int>(center + support + 0.5);
    if (xmax > in_size) xmax = in_size;
    xmax -= xmin;
    double* k = &kk[static_cast<size_t>(xx) * ksize];
    for (int x = 0; x < xmax; ++x) {
      const double w = bicubic_filter((x + xmin - center + 0.5) * ss);
      k[x] = w;
      ww += w;
    }
    for (int x = 0; x < xmax; ++x) {
      if (ww != 0.0) k[x] /= ww;
    }
    c.bounds[xx * 2 + 0] = xmin;
    c.bounds[xx * 2 + 1] = xmax;
  }
  // normalize_coeffs_8bpc: (int)(k * 2^22 +- 0.5), i.e. round half away from zero. The
  // fixed-point weights of an output need not sum to exactly 2^22; Pillow does not fix that.
  c.kk.resize(kk.size());
  for (size_t i = 0; i < kk.size(); ++i) {
    c.kk[i] = kk[i] < 0 ? static_cast<int32_t>(-0.5 + kk[i] * (1 << kPrecisionBits))
                        : static_cast<int32_t>(0.5 + kk[i] * (1 << kPrecisionBits));
  }
  return c;
}

// ImagingResampleHorizontal_8bpc: out is out_width x (rows of `in` from row_offset).
void resample_horizontal(const Image& in, int row_offset, const AxisCoeffs& c, Image* out) {
  for (int yy = 0; yy < out->height; ++yy) {
    const uint8_t* src = &in.rgb[static_cast<size_t>(yy + row_offset) * in.width * 3];
    uint8_t* dst = &out->rgb[static_cast<size_t>(yy) * out->width * 3];
    for (int xx = 0; xx < out->width; ++xx) {
      const int xmin = c.bounds[xx * 2 + 0];
      const int xmax = c.bounds[xx * 2 + 1];
      const int32_t* k = &c.kk[static_cast<size_t>(xx) * c.ksize];
      int32_t ss0 = 1 << (kPrecisionBits - 1), ss1 = ss0, ss2 = ss0;
      for (int x = 0; x < xmax; ++x) {
        const uint8_t* p = &src[(x + xmin) * 3];
        ss0 += p[0] * k[x];
        ss1 += p[1] * k[x];
        ss2 += p[2] * k[x];
      }
      dst[xx * 3 + 0] = clip8(ss0);
      dst[xx * 3 + 1] = clip8(ss1);
      dst[xx * 3 + 2] = clip8(ss2);
    }
  }
}

// ImagingResampleVertical_8bpc: out is in.width x out_height.
void resample_vertical(const Image& in, const AxisCoeffs& c, Image* out) {
  const size_t stride = static_cast<size_t>(in.width) * 3;
  for (int yy = 0; yy < out->height; ++yy) {
    const int ymin = c.bounds[yy * 2 + 0];
    const int ymax = c.bounds[yy * 2 + 1];
    const int32_t* k = &c.kk[static_cast<size_t>(yy) * c.ksize];
    uint8_t* dst = &out->rgb[static_cast<size_t>(yy) * out->width * 3];
    for (int xx = 0; xx < out->width; ++xx) {
      int32_t ss0 = 1 << (kPrecisionBits - 1), ss1 = ss0, ss2 = ss0;
      for (int y = 0; y < ymax; ++y) {
        const uint8_t* p = &in.rgb[(y + ymin) * stride + xx * 3];
        ss0 += p[0] * k[y];
        ss1 += p[1] * k[y];
        ss2 += p[2] * k[y];
      }
      dst[xx * 3 + 0] = clip8(ss0);
      dst[xx * 3 + 1] = clip8(ss1);
      dst[xx * 3 + 2] = clip8(ss2);
    }
  }
}

Image make_image(int width, int height) {
  Image img;
  img.width = width;
  img.height = height;
  img.rgb.resize(static_cast<size_t>(width) * height * 3);
  return img;
}

}  // namespace

Image resize_bicubic(const Image& in, int out_width, int out_height) {
  if (out_width <= 0 || out_height <= 0 || in.width <= 0 || in.height <= 0) return Image{};
  // Image.resize returns a copy when the size does not change.
  if (out_width == in.width && out_height == in.height) return in;
  const bool need_horizontal = out_width != in.width;
  const bool need_vertical = out_height != in.height;

  AxisCoeffs horiz = precompute_coeffs(in.width, out_width);
  AxisCoeffs vert = precompute_coeffs(in.height, out_height);

  // The horizontal pass only produces the input rows that the vertical pass reads.
  const int ybox_first = vert.bounds[0];
  const int ybox_last = vert.bounds[out_height * 2 - 2] + vert.bounds[out_height * 2 - 1];

  const Image* src = &in;
  Image temp;
  if (need_horizontal) {
    for (int i = 0; i < out_height; ++i) vert.bounds[i * 2] -= ybox_first;
    temp = make_image(out_width, ybox_last - ybox_first);
    resample_horizontal(in, ybox_first, horiz, &temp);
    src = &temp;
  }
  if (!need_vertical) return temp;  // need_horizontal holds here
  Image out = make_image(src->width, out_height);
  resample_vertical(*src, vert, &out);
  return out;
}

}  // namespace pg::image
