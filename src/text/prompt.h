// PaliGemma's input sequence (SPEC section 2):
//   [image tokens x N per image] [BOS] encode(prefix + "\n")  | [suffix] [EOS]
// Everything before the bar is the prefix, attended bidirectionally.
#pragma once

#include <string>
#include <vector>

#include "base/status.h"
#include "text/tokenizer.h"

namespace pg::text {

struct PromptIds {
  std::vector<int> ids;
  int64_t num_image_tokens = 0;  // ids[0, num_image_tokens) are image placeholders
  int64_t prefix_len = 0;        // tokens attended bidirectionally
};

// Image placeholders, BOS, then encode(prefix + "\n"). An empty prefix is an error.
Result<PromptIds> build_prompt(const Tokenizer& tok, const std::string& prefix,
                               int64_t image_tokens_per_image, int64_t num_images,
                               int image_token_id);

// build_prompt, then encode(suffix) and EOS (for training and loss).
Result<PromptIds> build_training_example(const Tokenizer& tok, const std::string& prefix,
                                         const std::string& suffix, int64_t image_tokens_per_image,
                                         int64_t num_images, int image_token_id);

}  // namespace pg::text
