// A loaded model with its tokenizer, and generation: images + prompt -> tokens.
#pragma once

#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "base/status.h"
#include "image/image.h"
#include "model/paligemma.h"
#include "runtime/sampler.h"
#include "text/prompt.h"
#include "text/tokenizer.h"

namespace pg::runtime {

struct GenerateOptions {
  int64_t max_tokens = 32;
  SamplingOptions sampling;
  bool keep_logits = false;  // keep the logits row that chose each token
};

struct GenerateResult {
  std::vector<int> ids;  // generated ids; a final EOS is included
  std::string text;      // decoded text of ids
  Tensor logits;         // [steps, V] if keep_logits
  int64_t prompt_tokens = 0;
  std::string stop_reason;  // "eos", "max_tokens", "context" or "stopped"
  double vision_s = 0, prefill_s = 0, decode_s = 0, ttft_s = 0;
};

// Called with each new piece of text; return false to stop generating.
using TextCallback = std::function<bool(const std::string&)>;

class Session {
 public:
  // Loads DIR: config.json, safetensors, tokenizer.model.
  // Matrices are converted to `type` at load (kAsStored maps them as stored).
  static Result<std::unique_ptr<Session>> load(
      const std::string& dir, std::vector<std::string>* warnings,
      model::WeightType type = model::WeightType::kAsStored);

  const model::PaliGemma& model() const { return *model_; }
  const text::Tokenizer& tokenizer() const { return tokenizer_; }
  // Longest sequence (prompt + generated) the decoder takes.
  int64_t context_length() const;

  // Image -> pixel_values [3, S, S] at the model's image size.
  Result<Tensor> pixel_values(const image::Image& img) const;

  // The prompt's ids for `num_images` images.
  Result<text::PromptIds> prompt_ids(const std::string& prompt, int64_t num_images) const;

  Result<GenerateResult> generate(const std::vector<Tensor>& pixel_values,
                                  const std::string& prompt, const GenerateOptions& options,
                                  const TextCallback& on_text = nullptr) const;

 private:
  std::unique_ptr<model::PaliGemma> model_;
  text::Tokenizer tokenizer_;
  Session(std::unique_ptr<model::PaliGemma> m, text::Tokenizer t)
      : model_(std::move(m)), tokenizer_(std::move(t)) {}
};

}  // namespace pg::runtime
