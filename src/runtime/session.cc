#include "runtime/session.h"

#include <chrono>
#include <cstring>

namespace pg::runtime {
namespace {

double seconds_since(std::chrono::steady_clock::time_point t0) {
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
}

}  // namespace

Result<std::unique_ptr<Session>> Session::load(const std::string& dir,
                                               std::vector<std::string>* warnings,
                                               model::WeightType type) {
  PG_ASSIGN_OR_RETURN(auto model, model::PaliGemma::load(dir, warnings, type));
  PG_ASSIGN_OR_RETURN(text::Tokenizer tok, text::Tokenizer::load(dir + "/tokenizer.model"));
  const io::PaliGemmaConfig& c = model->config();
  if (tok.vocab_size() > c.text.vocab_size) {
    return invalid_argument(dir + "/tokenizer.model has " + std::to_string(tok.vocab_size()) +
                            " pieces but the embedding has only " +
                            std::to_string(c.text.vocab_size) + " rows (text_config.vocab_size)");
  }
  return std::unique_ptr<Session>(new Session(std::move(model), std::move(tok)));
}

int64_t Session::context_length() const { return model_->config().text.max_position_embeddings; }

Result<Tensor> Session::pixel_values(const image::Image& img) const {
  return image::preprocess(img, static_cast<int>(model_->config().vision.image_size));
}

Result<text::PromptIds> Session::prompt_ids(const std::string& prompt, int64_t num_images) const {
  const io::PaliGemmaConfig& c = model_->config();
  PG_ASSIGN_OR_RETURN(text::PromptIds p,
                      text::build_prompt(tokenizer_, prompt, c.num_image_tokens(), num_images,
                                         static_cast<int>(c.image_token_index)));
  const int64_t T = static_cast<int64_t>(p.ids.size());
  if (T >= context_length()) {
    return invalid_argument("the prompt is " + std::to_string(T) + " tokens (" +
                            std::to_string(p.num_image_tokens) + " image tokens + " +
                            std::to_string(T - p.num_image_tokens) +
                            " text tokens), which leaves no room in the context of " +
                            std::to_string(context_length()) + " tokens");
  }
  return p;
}

Result<GenerateResult> Session::generate(const std::vector<Tensor>& pixel_values,
                                         const std::string& prompt, const GenerateOptions& options,
                                         const TextCallback& on_text) const {
  const io::PaliGemmaConfig& c = model_->config();
  if (options.max_tokens < 1) {
    return invalid_argument("max_tokens must be at least 1, got " +
                            std::to_string(options.max_tokens));
  }
  for (size_t i = 0; i < pixel_values.size(); ++i) {
    const Shape want{c.vision.num_channels, c.vision.image_size, c.vision.image_size};
    if (pixel_values[i].shape() != want) {
      return invalid_argument("image " + std::to_string(i) + ": pixel_values of shape " +
                              shape_to_string(pixel_values[i].shape()) + ", expected " +
                              shape_to_string(want));
    }
  }
  PG_ASSIGN_OR_RETURN(text::PromptIds prompt_ids,
                      this->prompt_ids(prompt, static_cast<int64_t>(pixel_values.size())));
  const int64_t T = static_cast<int64_t>(prompt_ids.ids.size());
  const int64_t V = c.text.vocab_size;

  GenerateResult r;
  r.prompt_tokens = T;
  const auto t0 = std::chrono::steady_clock::now();
  Tensor features;
  if (!pixel_values.empty()) features = model_->image_features(pixel_values);
  r.vision_s = seconds_since(t0);

  const int64_t capacity = std::min(T + options.max_tokens, context_length());
  model::KvCache cache = model_->new_cache(capacity);
  const auto t1 = std::chrono::steady_clock::now();
  // The last prompt row's hidden state alone: it chooses the first token.
  Tensor hidden = model_->forward(prompt_ids.ids, pixel_values.empty() ? nullptr : &features, cache,
                                  prompt_ids.prefix_len, model::HiddenRows::kLast);
  Tensor logits = model_->logits(hidden.data(), 1);
  r.prefill_s = seconds_since(t1);

  Sampler sampler(options.sampling, tokenizer_.vocab_size());
  text::StreamingDecoder stream(tokenizer_);
  std::vector<float> kept;
  const auto t2 = std::chrono::steady_clock::now();
  while (true) {
    const int id = sampler.sample(logits.data());
    if (r.ids.empty()) r.ttft_s = seconds_since(t0);
    r.ids.push_back(id);
    if (options.keep_logits) kept.insert(kept.end(), logits.data(), logits.data() + V);
    if (id == c.eos_token_id) {
      r.stop_reason = "eos";
      break;
    }
    const std::string delta = stream.push(id);
    if (on_text && !delta.empty() && !on_text(delta)) {
      r.stop_reason = "stopped";
      break;
    }
    if (static_cast<int64_t>(r.ids.size()) >= options.max_tokens) {
      r.stop_reason = "max_tokens";
      break;
    }
    if (cache.length() >= cache.capacity()) {
      r.stop_reason = "context";
      break;
    }
    hidden = model_->forward({id}, nullptr, cache, prompt_ids.prefix_len);
    logits = model_->logits(hidden.data(), 1);
  }
  if (on_text) {
    const std::string rest = stream.finish();
    if (!rest.empty()) on_text(rest);
  }
  r.decode_s = seconds_since(t2);
  r.text = tokenizer_.decode(r.ids);
  if (options.keep_logits) {
    r.logits = Tensor({static_cast<int64_t>(r.ids.size()), V});
    std::memcpy(r.logits.data(), kept.data(), kept.size() * sizeof(float));
  }
  return r;
}

}  // namespace pg::runtime
