// Model::Impl: what the public Model wraps (a runtime session). Shared by the files of
// src/api; not part of the public API.
#pragma once

#include <memory>
#include <string>
#include <vector>

#include "image/image.h"
#include "paligemma/paligemma.h"
#include "runtime/session.h"

namespace paligemma {

struct Model::Impl {
  std::unique_ptr<pg::runtime::Session> session;
  ModelInfo info;
  std::vector<std::string> warnings;

  Result<pg::Tensor> load_pixels(const std::string& path) const {
    PG_ASSIGN_OR_RETURN(pg::image::Image img, pg::image::load_image(path));
    return session->pixel_values(img);
  }
  Result<pg::Tensor> decode_pixels(const std::string& bytes, size_t index) const {
    const std::string name = "image " + std::to_string(index);
    PG_ASSIGN_OR_RETURN(pg::image::Image img,
                        pg::image::decode_image(reinterpret_cast<const uint8_t*>(bytes.data()),
                                                bytes.size(), name));
    return session->pixel_values(img);
  }
  Result<Generation> run(const std::vector<pg::Tensor>& pixels, const std::string& prompt,
                         const GenerateOptions& o, const TextCallback& on_text) const;
};

}  // namespace paligemma
