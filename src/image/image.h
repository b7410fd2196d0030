// Images: decoding (JPEG with EXIF orientation, PNG), RGB conversion as Pillow's
// convert("RGB"), the PIL-compatible bicubic resize, and SigLIP's normalisation.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "base/status.h"
#include "tensor/tensor.h"

namespace pg::image {

// 8-bit RGB, interleaved, row-major: rgb[(y * width + x) * 3 + c].
struct Image {
  int width = 0;
  int height = 0;
  std::vector<uint8_t> rgb;
};

struct DecodeLimits {
  // Images with more pixels are refused from their header, before any pixel memory
  // is allocated (decompression bombs).
  int64_t max_pixels = 100'000'000;
  int64_t max_side = 30'000;
};

// Decodes JPEG or PNG bytes (format sniffed from the magic bytes). JPEG EXIF
// orientation is applied. `name` (a path) appears in error messages.
Result<Image> decode_image(const uint8_t* data, size_t size, const std::string& name,
                           const DecodeLimits& limits = {});
Result<Image> load_image(const std::string& path, const DecodeLimits& limits = {});

// Pillow 9.x Image.resize(..., BICUBIC) on 8-bit RGB (antialiased when shrinking):
// horizontal pass then vertical pass, fixed-point weights, as SPEC section 4 states.
Image resize_bicubic(const Image& in, int out_width, int out_height);

// pixel_values [3, H, W] in [-1, 1]: (x / 255 - 0.5) / 0.5, channel-major.
Tensor to_pixel_values(const Image& img);

// decode -> resize to size x size -> to_pixel_values.
Result<Tensor> preprocess(const Image& img, int size);

}  // namespace pg::image
