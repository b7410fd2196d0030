#include "tasks/mask.h"

#include <cairo.h>

#include <algorithm>
#include <cmath>
#include <memory>

namespace pg::tasks {
namespace {

// First pixel index whose centre (i + 0.5) is >= v, clamped to [0, limit].
int first_center_at_or_after(double v, int limit) {
  const double c = std::ceil(v - 0.5);
  if (!(c > 0)) return 0;  // also NaN
  return c >= limit ? limit : static_cast<int>(c);
}

cairo_status_t append_bytes(void* closure, const unsigned char* data, unsigned int length) {
  static_cast<std::string*>(closure)->append(reinterpret_cast<const char*>(data), length);
  return CAIRO_STATUS_SUCCESS;
}

}  // namespace

BinaryMask mask_in_box(const float* logits, int size, double x0, double y0, double x1, double y1,
                       int image_width, int image_height) {
  BinaryMask m;
  // Pixels px with x0 <= px + 0.5 < x1.
  const int px0 = first_center_at_or_after(x0, image_width),
            px1 = first_center_at_or_after(x1, image_width);
  const int py0 = first_center_at_or_after(y0, image_height),
            py1 = first_center_at_or_after(y1, image_height);
  m.x0 = px0;
  m.y0 = py0;
  m.width = std::max(px1 - px0, 0);
  m.height = std::max(py1 - py0, 0);
  m.bits.assign(static_cast<size_t>(m.width) * m.height, 0);
  if (m.width == 0 || m.height == 0 || size < 1 || !(x1 > x0) || !(y1 > y0)) return m;

  // Source coordinate on the grid for a pixel centre: (p + 0.5 - box0) / box_len * S - 0.5.
  auto source = [size](double centre, double b0, double b1, int* i0, int* i1, float* frac) {
    double s = (centre - b0) / (b1 - b0) * size - 0.5;
    s = std::clamp(s, 0.0, static_cast<double>(size - 1));
    const int f = static_cast<int>(std::floor(s));
    *i0 = f;
    *i1 = std::min(f + 1, size - 1);
    *frac = static_cast<float>(s - f);
  };
  std::vector<int> xa(static_cast<size_t>(m.width)), xb(xa.size());
  std::vector<float> xf(xa.size());
  for (int x = 0; x < m.width; ++x) source(px0 + x + 0.5, x0, x1, &xa[x], &xb[x], &xf[x]);
  for (int y = 0; y < m.height; ++y) {
    int ya, yb;
    float yf;
    source(py0 + y + 0.5, y0, y1, &ya, &yb, &yf);
    const float* ra = logits + static_cast<size_t>(ya) * size;
    const float* rb = logits + static_cast<size_t>(yb) * size;
    for (int x = 0; x < m.width; ++x) {
      const float top = ra[xa[x]] + (ra[xb[x]] - ra[xa[x]]) * xf[x];
      const float bottom = rb[xa[x]] + (rb[xb[x]] - rb[xa[x]]) * xf[x];
      const float v = top + (bottom - top) * yf;
      m.bits[static_cast<size_t>(y) * m.width + x] = v > 0.0f ? 1 : 0;
    }
  }
  return m;
}

std::vector<int64_t> rle_encode(const BinaryMask& m) {
  std::vector<int64_t> runs;
  uint8_t current = 0;
  int64_t run = 0;
  for (uint8_t b : m.bits) {
    const uint8_t v = b ? 1 : 0;
    if (v != current) {
      runs.push_back(run);
      run = 0;
      current = v;
    }
    ++run;
  }
  runs.push_back(run);
  return runs;
}

std::vector<uint8_t> rle_decode(const std::vector<int64_t>& runs) {
  std::vector<uint8_t> bits;
  uint8_t v = 0;
  for (int64_t r : runs) {
    bits.insert(bits.end(), static_cast<size_t>(std::max<int64_t>(r, 0)), v);
    v ^= 1;
  }
  return bits;
}

Result<std::string> mask_png(const BinaryMask& m) {
  if (m.width < 1 || m.height < 1)
    return invalid_argument("the mask is empty; there is no PNG to make");
  // A8 surfaces are written by cairo as 8-bit greyscale PNGs.
  std::unique_ptr<cairo_surface_t, decltype(&cairo_surface_destroy)> s(
      cairo_image_surface_create(CAIRO_FORMAT_A8, m.width, m.height), cairo_surface_destroy);
  if (cairo_surface_status(s.get()) != CAIRO_STATUS_SUCCESS) {
    return internal_error(std::string("cairo: ") +
                          cairo_status_to_string(cairo_surface_status(s.get())));
  }
  cairo_surface_flush(s.get());
  unsigned char* data = cairo_image_surface_get_data(s.get());
  const int stride = cairo_image_surface_get_stride(s.get());
  for (int y = 0; y < m.height; ++y) {
    for (int x = 0; x < m.width; ++x) {
      data[static_cast<size_t>(y) * stride + x] =
          m.bits[static_cast<size_t>(y) * m.width + x] ? 255 : 0;
    }
  }
  cairo_surface_mark_dirty(s.get());
  std::string png;
  const cairo_status_t st = cairo_surface_write_to_png_stream(s.get(), append_bytes, &png);
  if (st != CAIRO_STATUS_SUCCESS)
    return internal_error(std::string("cairo: ") + cairo_status_to_string(st));
  return png;
}

std::string base64_encode(std::string_view bytes) {
  static const char kTable[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
  std::string out;
  out.reserve((bytes.size() + 2) / 3 * 4);
  size_t i = 0;
  for (; i + 2 < bytes.size(); i += 3) {
    const uint32_t v = (uint32_t{static_cast<uint8_t>(bytes[i])} << 16) |
                       (uint32_t{static_cast<uint8_t>(bytes[i + 1])} << 8) |
                       static_cast<uint8_t>(bytes[i + 2]);
    out += kTable[(v >> 18) & 63];
    out += kTable[(v >> 12) & 63];
    out += kTable[(v >> 6) & 63];
    out += kTable[v & 63];
  }
  if (i < bytes.size()) {
    uint32_t v = uint32_t{static_cast<uint8_t>(bytes[i])} << 16;
    if (i + 1 < bytes.size()) v |= uint32_t{static_cast<uint8_t>(bytes[i + 1])} << 8;
    out += kTable[(v >> 18) & 63];
    out += kTable[(v >> 12) & 63];
    out += i + 1 < bytes.size() ? kTable[(v >> 6) & 63] : '=';
    out += '=';
  }
  return out;
}

}  // namespace pg::tasks
