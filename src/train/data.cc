#include "train/data.h"

#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>

#include "text/prompt.h"
#include "train/rng.h"

namespace pg::train {
namespace fs = std::filesystem;

Result<Example> ExampleBuilder::tokens(const std::string& prefix, const std::string& suffix,
                                       int64_t num_images) const {
  PG_ASSIGN_OR_RETURN(text::PromptIds p, text::build_training_example(
                                             tok_, prefix, suffix, cfg_.num_image_tokens(),
                                             num_images, static_cast<int>(cfg_.image_token_index)));
  const int64_t T = static_cast<int64_t>(p.ids.size());
  if (T > cfg_.text.max_position_embeddings) {
    return invalid_argument("the example is " + std::to_string(T) +
                            " tokens, more than the context of " +
                            std::to_string(cfg_.text.max_position_embeddings));
  }
  Example ex;
  ex.ids = std::move(p.ids);
  ex.prefix_len = p.prefix_len;
  ex.suffix = suffix;
  return ex;
}

Result<image::Image> ExampleBuilder::load_resized(const std::string& path) const {
  PG_ASSIGN_OR_RETURN(image::Image img, image::load_image(path));
  const int s = static_cast<int>(cfg_.vision.image_size);
  if (img.width == s && img.height == s) return img;
  return image::resize_bicubic(img, s, s);
}

Result<Example> ExampleBuilder::build(const std::vector<std::string>& image_paths,
                                      const std::string& prefix, const std::string& suffix) const {
  PG_ASSIGN_OR_RETURN(Example ex, tokens(prefix, suffix, static_cast<int64_t>(image_paths.size())));
  for (const std::string& path : image_paths) {
    PG_ASSIGN_OR_RETURN(image::Image img, load_resized(path));
    ex.pixels.push_back(pixels(img));
  }
  return ex;
}

Result<std::vector<Record>> read_jsonl(const std::string& path) {
  std::ifstream f(path);
  if (!f) return not_found("cannot open the data file " + path);
  const fs::path base = fs::path(path).parent_path();
  std::vector<Record> out;
  std::string line;
  int64_t n = 0;
  while (std::getline(f, line)) {
    ++n;
    if (line.find_first_not_of(" \t\r") == std::string::npos) continue;
    const std::string where = path + ":" + std::to_string(n);
    nlohmann::json j;
    try {
      j = nlohmann::json::parse(line);
    } catch (const nlohmann::json::exception& e) {
      return invalid_argument(where + ": not JSON: " + e.what());
    }
    if (!j.is_object()) return invalid_argument(where + ": expected a JSON object");
    Record r;
    r.line = n;
    for (const char* key : {"prefix", "suffix"}) {
      if (!j.contains(key) || !j[key].is_string()) {
        return invalid_argument(where + ": \"" + key + "\" must be a string");
      }
    }
    r.prefix = j["prefix"].get<std::string>();
    r.suffix = j["suffix"].get<std::string>();
    std::vector<std::string> images;
    if (j.contains("image") && j["image"].is_string()) {
      images.push_back(j["image"].get<std::string>());
    } else if (j.contains("image") && j["image"].is_array()) {
      for (const auto& v : j["image"]) {
        if (!v.is_string()) return invalid_argument(where + ": \"image\" entries must be strings");
        images.push_back(v.get<std::string>());
      }
    } else {
      return invalid_argument(where + ": \"image\" must be a path or a list of paths");
    }
    for (const std::string& img : images) {
      const fs::path p(img);
      r.images.push_back(p.is_absolute() ? p.string() : (base / p).string());
    }
    out.push_back(std::move(r));
  }
  if (out.empty()) return invalid_argument("the data file " + path + " holds no examples");
  return out;
}

Result<Dataset> Dataset::load(const std::string& path, const ExampleBuilder& builder) {
  Dataset d(builder);
  PG_ASSIGN_OR_RETURN(d.records_, read_jsonl(path));
  for (const Record& r : d.records_) {
    const std::string where = path + ":" + std::to_string(r.line);
    for (const std::string& img : r.images) {
      if (!fs::is_regular_file(img)) return not_found(where + ": image " + img + " does not exist");
    }
    auto ex = builder.tokens(r.prefix, r.suffix, static_cast<int64_t>(r.images.size()));
    if (!ex.ok()) return ex.status().with_context(where);
    d.tokens_.push_back(std::move(ex).value());
  }
  d.cache_.resize(d.records_.size());
  return d;
}

Result<Example> Dataset::get(int64_t i) {
  const size_t k = static_cast<size_t>(i);
  auto& cached = cache_[k];
  if (!cached) {
    std::vector<image::Image> imgs;
    for (const std::string& path : records_[k].images) {
      auto img = builder_->load_resized(path);
      if (!img.ok())
        return img.status().with_context("example on line " + std::to_string(records_[k].line));
      imgs.push_back(std::move(img).value());
      ++images_decoded_;
    }
    cached = std::move(imgs);
  }
  Example ex;
  ex.ids = tokens_[k].ids;
  ex.prefix_len = tokens_[k].prefix_len;
  ex.suffix = tokens_[k].suffix;
  for (const image::Image& img : *cached) ex.pixels.push_back(builder_->pixels(img));
  return ex;
}

int64_t Order::at(int64_t k) {
  const int64_t epoch = k / n_;
  if (epoch != epoch_) {
    perm_.resize(static_cast<size_t>(n_));
    for (int64_t i = 0; i < n_; ++i) perm_[static_cast<size_t>(i)] = i;
    if (shuffle_) {  // Fisher-Yates with a generator seeded by (seed, epoch)
      Rng rng(seed_ * 0x9e3779b97f4a7c15ull + static_cast<uint64_t>(epoch) + 1);
      for (int64_t i = n_ - 1; i > 0; --i) {
        const int64_t j = static_cast<int64_t>(rng.below(static_cast<uint64_t>(i + 1)));
        std::swap(perm_[static_cast<size_t>(i)], perm_[static_cast<size_t>(j)]);
      }
    }
    epoch_ = epoch;
  }
  return perm_[static_cast<size_t>(k % n_)];
}

}  // namespace pg::train
