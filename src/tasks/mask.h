// Masks in the image: the decoder's [S, S] logits resized (bilinear) into the object's box and
// thresholded at 0 (probability x * 0.5 + 0.5 > 0.5); and their encodings (RLE, PNG).
#pragma once

#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "base/status.h"

namespace pg::tasks {

// A binary mask over the pixel rectangle [x0, x0 + width) x [y0, y0 + height) of the image.
struct BinaryMask {
  int x0 = 0, y0 = 0;
  int width = 0, height = 0;
  std::vector<uint8_t> bits;  // [height, width], row-major, 1 = object
};

// logits [size, size] -> mask over the pixels whose centres lie in the box (x0, y0)-(x1, y1)
// (pixels, clipped to image_width x image_height). Each pixel samples the logits bilinearly
// at its centre, mapped from the box onto the [size, size] grid with half-pixel centres
// (clamped at the edges), and is 1 where the logit is > 0.
BinaryMask mask_in_box(const float* logits, int size, double x0, double y0, double x1, double y1,
                       int image_width, int image_height);

// Run lengths of the row-major bits, alternating 0-runs and 1-runs, starting with a (possibly
// empty) run of 0s: {2, 3, 1} = 0 0 1 1 1 0. They sum to width * height.
std::vector<int64_t> rle_encode(const BinaryMask& m);
// The inverse: bits [count sum] from run lengths.
std::vector<uint8_t> rle_decode(const std::vector<int64_t>& runs);

// An 8-bit greyscale PNG of the mask (0 or 255), width x height. Errors: an empty mask.
Result<std::string> mask_png(const BinaryMask& m);

// Standard base64 (RFC 4648, with '=' padding).
std::string base64_encode(std::string_view bytes);

}  // namespace pg::tasks
