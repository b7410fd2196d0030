// Pictures of task results, drawn with cairo: translucent masks, box outlines, and labels
// (DejaVu Sans on a filled tag) over the input image; optionally a text band (a caption or
// an answer) at the bottom. Written as PNG.
#pragma once

#include <string>
#include <vector>

#include "base/status.h"
#include "image/image.h"
#include "tasks/mask.h"

namespace pg::tasks {

struct DrawObject {
  std::string label;
  double x0 = 0, y0 = 0, x1 = 0, y1 = 0;  // box in pixels of the image
  const BinaryMask* mask = nullptr;       // optional; drawn translucent in the box's colour
};

struct DrawOptions {
  std::string text;          // drawn in a band at the bottom when not empty
  double mask_alpha = 0.45;  // opacity of masks
};

// img [H, W, 3] + objects -> PNG bytes of the same size. Labels that are not valid UTF-8 are
// drawn with '?' for the bad bytes.
Result<std::string> render_png(const image::Image& img, const std::vector<DrawObject>& objects,
                               const DrawOptions& options = {});
// render_png, written to `path` atomically. Errors name the path.
Status draw_png(const image::Image& img, const std::vector<DrawObject>& objects,
                const std::string& path, const DrawOptions& options = {});

// The colour (r, g, b in 0..1) of the i-th object.
void object_color(size_t i, double rgb[3]);

// `s` with each byte that is not part of valid UTF-8, and each control character, as '?'.
std::string sanitize_utf8(const std::string& s);

}  // namespace pg::tasks
