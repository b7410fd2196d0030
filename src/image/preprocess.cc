// SigLIP's image preprocessing: bicubic resize to size x size (aspect ratio ignored), then
// pixel_values = (v / 255 - 0.5) / 0.5 in float32, channel-major [3, H, W].
#include <string>

#include "image/image.h"

namespace pg::image {

Tensor to_pixel_values(const Image& img) {
  const int64_t h = img.height, w = img.width;
  Tensor t({3, h, w});
  float* out = t.data();
  const int64_t plane = h * w;
  for (int64_t i = 0; i < plane; ++i) {
    for (int c = 0; c < 3; ++c) {
      const float v = static_cast<float>(img.rgb[static_cast<size_t>(i * 3 + c)]);
      out[c * plane + i] = (v / 255.0f - 0.5f) / 0.5f;
    }
  }
  return t;
}

Result<Tensor> preprocess(const Image& img, int size) {
  if (size <= 0) {
    return invalid_argument("image preprocessing: size must be positive, got " +
                            std::to_string(size));
  }
  if (img.width <= 0 || img.height <= 0 ||
      img.rgb.size() != static_cast<size_t>(img.width) * img.height * 3) {
    return invalid_argument("image preprocessing: empty or inconsistent image (" +
                            std::to_string(img.width) + "x" + std::to_string(img.height) + ", " +
                            std::to_string(img.rgb.size()) + " bytes)");
  }
  if (img.width == size && img.height == size) return to_pixel_values(img);
  return to_pixel_values(resize_bicubic(img, size, size));
}

}  // namespace pg::image
