// Training data: {"image": path, "prefix": "...", "suffix": "..."} per line of a JSONL file
// (paths relative to the file; "image" may also be a list of paths for multi-image
// examples), tokenised up front, images decoded and resized once and cached (8-bit, at
// the model's size), and the order of examples: one seeded shuffle per epoch.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "base/status.h"
#include "image/image.h"
#include "io/config.h"
#include "text/tokenizer.h"
#include "train/example.h"

namespace pg::train {

// Builds examples for a model: the sequence of SPEC section 2 and SigLIP's pixel values.
class ExampleBuilder {
 public:
  // cfg: the training config (its image size, which may differ from the checkpoint's).
  ExampleBuilder(const text::Tokenizer& tok, const io::PaliGemmaConfig& cfg)
      : tok_(tok), cfg_(cfg) {}
  // ids and prefix_len for `num_images` images (no pixels yet).
  Result<Example> tokens(const std::string& prefix, const std::string& suffix,
                         int64_t num_images) const;
  // A decoded image resized to the model's size (8-bit RGB).
  Result<image::Image> load_resized(const std::string& path) const;
  // Pixel values [3, S, S] of a resized image.
  Tensor pixels(const image::Image& resized) const { return image::to_pixel_values(resized); }
  // tokens + pixels of image files.
  Result<Example> build(const std::vector<std::string>& image_paths, const std::string& prefix,
                        const std::string& suffix) const;
  const text::Tokenizer& tokenizer() const { return tok_; }

 private:
  const text::Tokenizer& tok_;
  io::PaliGemmaConfig cfg_;
};

struct Record {
  std::vector<std::string> images;  // resolved paths
  std::string prefix, suffix;
  int64_t line = 0;  // 1-based line in the file
};

// Parses a JSONL file; errors name the file and line.
Result<std::vector<Record>> read_jsonl(const std::string& path);

class Dataset {
 public:
  // Reads and tokenises every record (errors name the line) and checks the image files exist.
  static Result<Dataset> load(const std::string& path, const ExampleBuilder& builder);
  int64_t size() const { return static_cast<int64_t>(records_.size()); }
  const Record& record(int64_t i) const { return records_[static_cast<size_t>(i)]; }
  int64_t loss_tokens(int64_t i) const { return tokens_[static_cast<size_t>(i)].loss_tokens(); }
  int64_t sequence_tokens(int64_t i) const {
    return static_cast<int64_t>(tokens_[static_cast<size_t>(i)].ids.size());
  }
  // Example i with its pixels; its images are decoded and resized on first use only.
  Result<Example> get(int64_t i);
  // Images decoded so far (each once).
  int64_t images_decoded() const { return images_decoded_; }

 private:
  explicit Dataset(const ExampleBuilder& b) : builder_(&b) {}
  const ExampleBuilder* builder_;
  std::vector<Record> records_;
  std::vector<Example> tokens_;  // ids, prefix_len, suffix (no pixels)
  std::vector<std::optional<std::vector<image::Image>>> cache_;
  int64_t images_decoded_ = 0;
};

// The order of examples: epoch e is a permutation of [0, n) drawn from (seed, e) (or the
// identity without shuffling); position k of the endless stream is perm_{k / n}[k % n].
class Order {
 public:
  Order(int64_t n, uint64_t seed, bool shuffle) : n_(n), seed_(seed), shuffle_(shuffle) {}
  int64_t at(int64_t k);

 private:
  int64_t n_;
  uint64_t seed_;
  bool shuffle_;
  int64_t epoch_ = -1;
  std::vector<int64_t> perm_;
};

}  // namespace pg::train
