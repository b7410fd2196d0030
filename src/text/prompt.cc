#include "text/prompt.h"

namespace pg::text {

Result<PromptIds> build_prompt(const Tokenizer& tok, const std::string& prefix,
                               int64_t image_tokens_per_image, int64_t num_images,
                               int image_token_id) {
  if (prefix.empty()) {
    return invalid_argument("the prompt is empty: give a task prefix such as \"caption en\"");
  }
  PromptIds p;
  p.num_image_tokens = image_tokens_per_image * num_images;
  p.ids.assign(static_cast<size_t>(p.num_image_tokens), image_token_id);
  p.ids.push_back(tok.bos_id());
  for (int id : tok.encode(prefix + "\n")) p.ids.push_back(id);
  p.prefix_len = static_cast<int64_t>(p.ids.size());
  return p;
}

Result<PromptIds> build_training_example(const Tokenizer& tok, const std::string& prefix,
                                         const std::string& suffix, int64_t image_tokens_per_image,
                                         int64_t num_images, int image_token_id) {
  PG_ASSIGN_OR_RETURN(
      PromptIds p, build_prompt(tok, prefix, image_tokens_per_image, num_images, image_token_id));
  for (int id : tok.encode(suffix)) p.ids.push_back(id);
  p.ids.push_back(tok.eos_id());
  return p;
}

}  // namespace pg::text
