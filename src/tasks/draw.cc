#include "tasks/draw.h"

#include <cairo.h>

#include <algorithm>
#include <cmath>
#include <memory>

#include "io/mapped_file.h"

namespace pg::tasks {
namespace {

using Surface = std::unique_ptr<cairo_surface_t, decltype(&cairo_surface_destroy)>;
using Context = std::unique_ptr<cairo_t, decltype(&cairo_destroy)>;

// Well-separated colours (Tableau 10).
constexpr unsigned kPalette[] = {0x1f77b4, 0xff7f0e, 0x2ca02c, 0xd62728, 0x9467bd,
                                 0x8c564b, 0xe377c2, 0x7f7f7f, 0xbcbd22, 0x17becf};
constexpr char kFont[] = "DejaVu Sans";

cairo_status_t append_bytes(void* closure, const unsigned char* data, unsigned int length) {
  static_cast<std::string*>(closure)->append(reinterpret_cast<const char*>(data), length);
  return CAIRO_STATUS_SUCCESS;
}

Status cairo_check(cairo_status_t st, const char* what) {
  if (st == CAIRO_STATUS_SUCCESS) return Status::Ok();
  return internal_error(std::string("cairo (") + what + "): " + cairo_status_to_string(st));
}

// Copies img [H, W, 3] into a new RGB24 surface.
Result<Surface> image_surface(const image::Image& img) {
  Surface s(cairo_image_surface_create(CAIRO_FORMAT_RGB24, img.width, img.height),
            cairo_surface_destroy);
  PG_RETURN_IF_ERROR(cairo_check(cairo_surface_status(s.get()), "image surface"));
  cairo_surface_flush(s.get());
  unsigned char* data = cairo_image_surface_get_data(s.get());
  const int stride = cairo_image_surface_get_stride(s.get());
  for (int y = 0; y < img.height; ++y) {
    auto* row = reinterpret_cast<uint32_t*>(data + static_cast<size_t>(y) * stride);
    const uint8_t* src = &img.rgb[static_cast<size_t>(y) * img.width * 3];
    for (int x = 0; x < img.width; ++x) {
      row[x] = 0xff000000u | (uint32_t{src[3 * x]} << 16) | (uint32_t{src[3 * x + 1]} << 8) |
               src[3 * x + 2];
    }
  }
  cairo_surface_mark_dirty(s.get());
  return s;
}

// Fills the mask's pixels with the current source colour at `alpha`.
Status paint_mask(cairo_t* cr, const BinaryMask& m, double alpha) {
  if (m.width < 1 || m.height < 1) return Status::Ok();
  Surface a(cairo_image_surface_create(CAIRO_FORMAT_A8, m.width, m.height), cairo_surface_destroy);
  PG_RETURN_IF_ERROR(cairo_check(cairo_surface_status(a.get()), "mask surface"));
  cairo_surface_flush(a.get());
  unsigned char* data = cairo_image_surface_get_data(a.get());
  const int stride = cairo_image_surface_get_stride(a.get());
  const auto level = static_cast<unsigned char>(std::lround(std::clamp(alpha, 0.0, 1.0) * 255));
  for (int y = 0; y < m.height; ++y) {
    for (int x = 0; x < m.width; ++x) {
      data[static_cast<size_t>(y) * stride + x] =
          m.bits[static_cast<size_t>(y) * m.width + x] ? level : 0;
    }
  }
  cairo_surface_mark_dirty(a.get());
  cairo_mask_surface(cr, a.get(), m.x0, m.y0);
  return Status::Ok();
}

// A text tag with a filled background; its top-left corner at (x, y).
void draw_tag(cairo_t* cr, const std::string& text, double x, double y, double pad,
              const double rgb[3]) {
  cairo_font_extents_t fe;
  cairo_font_extents(cr, &fe);
  cairo_text_extents_t te;
  cairo_text_extents(cr, text.c_str(), &te);
  const double w = te.x_advance + 2 * pad, h = fe.ascent + fe.descent + 2 * pad;
  cairo_set_source_rgba(cr, rgb[0], rgb[1], rgb[2], 0.9);
  cairo_rectangle(cr, x, y, w, h);
  cairo_fill(cr);
  const double luma = 0.299 * rgb[0] + 0.587 * rgb[1] + 0.114 * rgb[2];
  if (luma > 0.6) {
    cairo_set_source_rgb(cr, 0, 0, 0);
  } else {
    cairo_set_source_rgb(cr, 1, 1, 1);
  }
  cairo_move_to(cr, x + pad, y + pad + fe.ascent);
  cairo_show_text(cr, text.c_str());
}

// Words of `text` in lines no wider than `width`; at most `max_lines`, the last cut with "...".
std::vector<std::string> wrap(cairo_t* cr, const std::string& text, double width,
                              size_t max_lines) {
  std::vector<std::string> lines;
  std::string line;
  auto fits = [&](const std::string& s) {
    cairo_text_extents_t te;
    cairo_text_extents(cr, s.c_str(), &te);
    return te.x_advance <= width;
  };
  size_t pos = 0;
  while (pos < text.size()) {
    size_t end = text.find(' ', pos);
    if (end == std::string::npos) end = text.size();
    const std::string word = text.substr(pos, end - pos);
    pos = end + 1;
    if (word.empty()) continue;
    const std::string candidate = line.empty() ? word : line + " " + word;
    if (fits(candidate) || line.empty()) {
      line = candidate;
    } else {
      lines.push_back(line);
      line = word;
    }
  }
  if (!line.empty()) lines.push_back(line);
  if (lines.size() > max_lines) {
    lines.resize(max_lines);
    lines.back() += " ...";
  }
  return lines;
}

}  // namespace

void object_color(size_t i, double rgb[3]) {
  const unsigned c = kPalette[i % (sizeof(kPalette) / sizeof(kPalette[0]))];
  rgb[0] = ((c >> 16) & 0xff) / 255.0;
  rgb[1] = ((c >> 8) & 0xff) / 255.0;
  rgb[2] = (c & 0xff) / 255.0;
}

std::string sanitize_utf8(const std::string& s) {
  std::string out;
  out.reserve(s.size());
  size_t i = 0;
  while (i < s.size()) {
    const auto c = static_cast<unsigned char>(s[i]);
    size_t n = 0;
    uint32_t cp = 0;
    if (c < 0x80) {
      n = 1;
      cp = c;
    } else if ((c & 0xe0) == 0xc0) {
      n = 2;
      cp = c & 0x1f;
    } else if ((c & 0xf0) == 0xe0) {
      n = 3;
      cp = c & 0x0f;
    } else if ((c & 0xf8) == 0xf0) {
      n = 4;
      cp = c & 0x07;
    }
    bool ok = n > 0 && i + n <= s.size();
    for (size_t k = 1; ok && k < n; ++k) {
      const auto cc = static_cast<unsigned char>(s[i + k]);
      ok = (cc & 0xc0) == 0x80;
      cp = (cp << 6) | (cc & 0x3f);
    }
    static const uint32_t kMin[] = {0, 0, 0x80, 0x800, 0x10000};
    ok = ok && cp >= kMin[n] && cp <= 0x10ffff && !(cp >= 0xd800 && cp <= 0xdfff) && cp >= 0x20 &&
         cp != 0x7f;
    if (ok) {
      out.append(s, i, n);
      i += n;
    } else {
      out += '?';
      i += 1;
    }
  }
  return out;
}

Result<std::string> render_png(const image::Image& img, const std::vector<DrawObject>& objects,
                               const DrawOptions& options) {
  if (img.width < 1 || img.height < 1 || img.width > 32767 || img.height > 32767 ||
      img.rgb.size() != static_cast<size_t>(img.width) * img.height * 3) {
    return invalid_argument("cannot draw on an image of " + std::to_string(img.width) + "x" +
                            std::to_string(img.height) + " pixels (1..32767 per side)");
  }
  PG_ASSIGN_OR_RETURN(Surface surface, image_surface(img));
  Context cr(cairo_create(surface.get()), cairo_destroy);
  cairo_t* c = cr.get();
  const double side = std::min(img.width, img.height);
  const double line = std::max(2.0, side / 250.0);
  const double font = std::clamp(side / 28.0, 11.0, 40.0);
  const double pad = std::max(2.0, font / 6.0);

  // Masks under the outlines, outlines under the labels.
  for (size_t i = 0; i < objects.size(); ++i) {
    if (objects[i].mask == nullptr) continue;
    double rgb[3];
    object_color(i, rgb);
    cairo_set_source_rgb(c, rgb[0], rgb[1], rgb[2]);
    PG_RETURN_IF_ERROR(paint_mask(c, *objects[i].mask, options.mask_alpha));
  }
  cairo_set_line_join(c, CAIRO_LINE_JOIN_MITER);
  for (size_t i = 0; i < objects.size(); ++i) {
    const DrawObject& o = objects[i];
    double rgb[3];
    object_color(i, rgb);
    // The outline lies inside the box, so a box at the image edge stays visible; a dark
    // halo under it keeps it visible on a background of its own colour.
    const double h = line / 2;
    cairo_rectangle(c, o.x0 + h, o.y0 + h, std::max(o.x1 - o.x0 - line, 0.0),
                    std::max(o.y1 - o.y0 - line, 0.0));
    cairo_set_source_rgba(c, 0, 0, 0, 0.5);
    cairo_set_line_width(c, line + 2);
    cairo_stroke_preserve(c);
    cairo_set_source_rgb(c, rgb[0], rgb[1], rgb[2]);
    cairo_set_line_width(c, line);
    cairo_stroke(c);
  }
  cairo_select_font_face(c, kFont, CAIRO_FONT_SLANT_NORMAL, CAIRO_FONT_WEIGHT_BOLD);
  cairo_set_font_size(c, font);
  cairo_font_extents_t fe;
  cairo_font_extents(c, &fe);
  const double tag_h = fe.ascent + fe.descent + 2 * pad;
  for (size_t i = 0; i < objects.size(); ++i) {
    const DrawObject& o = objects[i];
    const std::string label = sanitize_utf8(o.label);
    if (label.empty()) continue;
    double rgb[3];
    object_color(i, rgb);
    cairo_text_extents_t te;
    cairo_text_extents(c, label.c_str(), &te);
    const double tag_w = te.x_advance + 2 * pad;
    // Above the box when there is room, else just inside its top edge.
    const double y = o.y0 - tag_h >= 0 ? o.y0 - tag_h : std::max(o.y0, 0.0);
    const double x = std::max(0.0, std::min(o.x0, img.width - tag_w));
    draw_tag(c, label, x, y, pad, rgb);
  }
  if (!options.text.empty()) {
    const std::string text = sanitize_utf8(options.text);
    cairo_select_font_face(c, kFont, CAIRO_FONT_SLANT_NORMAL, CAIRO_FONT_WEIGHT_NORMAL);
    const std::vector<std::string> lines = wrap(c, text, img.width - 2 * pad, 4);
    const double band = lines.size() * (fe.ascent + fe.descent) + 2 * pad;
    cairo_set_source_rgba(c, 0, 0, 0, 0.65);
    cairo_rectangle(c, 0, img.height - band, img.width, band);
    cairo_fill(c);
    cairo_set_source_rgb(c, 1, 1, 1);
    for (size_t k = 0; k < lines.size(); ++k) {
      cairo_move_to(c, pad, img.height - band + pad + fe.ascent + k * (fe.ascent + fe.descent));
      cairo_show_text(c, lines[k].c_str());
    }
  }
  PG_RETURN_IF_ERROR(cairo_check(cairo_status(c), "drawing"));
  cairo_surface_flush(surface.get());
  std::string png;
  PG_RETURN_IF_ERROR(
      cairo_check(cairo_surface_write_to_png_stream(surface.get(), append_bytes, &png), "PNG"));
  return png;
}

Status draw_png(const image::Image& img, const std::vector<DrawObject>& objects,
                const std::string& path, const DrawOptions& options) {
  auto png = render_png(img, objects, options);
  if (!png.ok()) return png.status().with_context(path);
  return io::write_file_atomic(path, png->data(), png->size());
}

}  // namespace pg::tasks

// fontconfig (under cairo's font lookup) keeps process-lifetime allocations that
// LeakSanitizer reports as leaks at exit (tools/test.sh runs with detect_leaks=1). Any binary
// that links the drawing code gets this suppression; weak, so a binary may define its own.
extern "C" __attribute__((weak)) const char* __lsan_default_suppressions() {
  return "leak:libfontconfig.so\n";
}
