#include "paligemma/paligemma.h"

#include <cmath>
#include <cstring>
#include <filesystem>
#include <map>
#include <nlohmann/json.hpp>

#include "base/parallel.h"
#include "image/image.h"
#include "io/mapped_file.h"
#include "io/npy.h"
#include "io/safetensors.h"
#include "model/trace.h"
#include "model/weights.h"
#include "model_impl.h"
#include "runtime/session.h"

namespace paligemma {

namespace {

int64_t count_parameters(const pg::io::PaliGemmaConfig& c) {
  const auto& v = c.vision;
  const auto& t = c.text;
  const int64_t W = v.hidden_size, I = v.intermediate_size;
  int64_t n = W * v.num_channels * v.patch_size * v.patch_size + W + v.num_patches() * W + 2 * W;
  n += v.num_hidden_layers * (4 * (W * W + W) + 4 * W + I * W + I + W * I + W);
  n += c.projection_dim * W + c.projection_dim;
  const int64_t H = t.hidden_size, D = t.head_dim;
  const int64_t attn = H * t.num_attention_heads * D * 2 + H * t.num_key_value_heads * D * 2;
  const int64_t norms = (t.is_gemma2() ? 4 : 2) * H;
  n += t.vocab_size * H + H + t.num_hidden_layers * (attn + 3 * H * t.intermediate_size + norms);
  return n;
}

}  // namespace

Model::Model(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}
Model::Model(Model&&) noexcept = default;
Model& Model::operator=(Model&&) noexcept = default;
Model::~Model() = default;

Result<Model> Model::load(const std::string& dir, const LoadOptions& options) {
  auto impl = std::make_unique<Impl>();
  PG_ASSIGN_OR_RETURN(pg::model::WeightType type, pg::model::parse_weight_type(options.dtype));
  PG_ASSIGN_OR_RETURN(impl->session, pg::runtime::Session::load(dir, &impl->warnings, type));
  const pg::io::PaliGemmaConfig& c = impl->session->model().config();
  ModelInfo& i = impl->info;
  i.decoder = c.text.is_gemma2() ? "gemma2" : "gemma";
  i.image_size = c.vision.image_size;
  i.image_tokens = c.num_image_tokens();
  i.vocab_size = c.text.vocab_size;
  i.tokenizer_vocab = impl->session->tokenizer().vocab_size();
  i.text_hidden_size = c.text.hidden_size;
  i.context_length = impl->session->context_length();
  i.num_parameters = count_parameters(c);
  return Model(std::move(impl));
}

const ModelInfo& Model::info() const { return impl_->info; }
const std::vector<std::string>& Model::warnings() const { return impl_->warnings; }

Result<Generation> Model::Impl::run(const std::vector<pg::Tensor>& pixels,
                                    const std::string& prompt, const GenerateOptions& o,
                                    const TextCallback& on_text) const {
  pg::runtime::GenerateOptions g;
  g.max_tokens = o.max_tokens;
  g.keep_logits = o.keep_logits;
  g.sampling.greedy = o.greedy;
  g.sampling.temperature = o.temperature;
  g.sampling.top_k = o.top_k;
  g.sampling.top_p = o.top_p;
  g.sampling.seed = o.seed;
  if (!o.greedy) {
    if (!(o.temperature >= 0.0f) || !std::isfinite(o.temperature)) {
      return pg::invalid_argument("temperature must be a finite number >= 0");
    }
    if (!(o.top_p > 0.0f && o.top_p <= 1.0f)) {
      return pg::invalid_argument("top_p must be in (0, 1]");
    }
    if (o.top_k < 0) return pg::invalid_argument("top_k must be >= 0");
  }
  pg::runtime::TextCallback cb;
  if (on_text) cb = [&on_text](const std::string& s) { return on_text(s); };
  PG_ASSIGN_OR_RETURN(pg::runtime::GenerateResult r, session->generate(pixels, prompt, g, cb));
  Generation out;
  out.ids = std::move(r.ids);
  out.text = std::move(r.text);
  out.vocab_size = info.vocab_size;
  out.prompt_tokens = r.prompt_tokens;
  out.stop_reason = r.stop_reason;
  out.timings = {r.vision_s, r.prefill_s, r.ttft_s, r.decode_s};
  if (o.keep_logits) out.logits.assign(r.logits.data(), r.logits.data() + r.logits.numel());
  return out;
}

Result<Generation> Model::generate(const std::vector<std::string>& image_paths,
                                   const std::string& prompt, const GenerateOptions& options,
                                   const TextCallback& on_text) const {
  std::vector<pg::Tensor> pixels;
  for (const std::string& path : image_paths) {
    PG_ASSIGN_OR_RETURN(pg::Tensor p, impl_->load_pixels(path));
    pixels.push_back(std::move(p));
  }
  return impl_->run(pixels, prompt, options, on_text);
}

Result<Generation> Model::generate_from_bytes(const std::vector<std::string>& images,
                                              const std::string& prompt,
                                              const GenerateOptions& options,
                                              const TextCallback& on_text) const {
  std::vector<pg::Tensor> pixels;
  for (size_t i = 0; i < images.size(); ++i) {
    PG_ASSIGN_OR_RETURN(pg::Tensor p, impl_->decode_pixels(images[i], i));
    pixels.push_back(std::move(p));
  }
  return impl_->run(pixels, prompt, options, on_text);
}

Result<std::vector<float>> Model::pixel_values(const std::string& image_path) const {
  PG_ASSIGN_OR_RETURN(pg::Tensor p, impl_->load_pixels(image_path));
  return std::vector<float>(p.data(), p.data() + p.numel());
}

Result<std::vector<float>> Model::image_features(
    const std::vector<std::string>& image_paths) const {
  std::vector<pg::Tensor> pixels;
  for (const std::string& path : image_paths) {
    PG_ASSIGN_OR_RETURN(pg::Tensor p, impl_->load_pixels(path));
    pixels.push_back(std::move(p));
  }
  pg::Tensor f = impl_->session->model().image_features(pixels);
  return std::vector<float>(f.data(), f.data() + f.numel());
}

Result<std::vector<int>> Model::prompt_ids(const std::string& prompt, int64_t num_images) const {
  PG_ASSIGN_OR_RETURN(pg::text::PromptIds p, impl_->session->prompt_ids(prompt, num_images));
  return p.ids;
}

std::string Model::decode(const std::vector<int>& ids) const {
  return impl_->session->tokenizer().decode(ids);
}

Status quantize(const std::string& dir, const std::string& dtype, const std::string& out_dir) {
  PG_ASSIGN_OR_RETURN(pg::model::WeightType type, pg::model::parse_weight_type(dtype));
  if (type == pg::model::WeightType::kAsStored)
    return pg::invalid_argument("quantize needs a dtype: int8, q4, w8a8, bf16 or f32");
  PG_ASSIGN_OR_RETURN(auto model, pg::model::PaliGemma::load(dir, nullptr, type));
  std::error_code ec;
  std::filesystem::create_directories(out_dir, ec);
  if (ec) return pg::invalid_argument(out_dir + ": cannot create the folder: " + ec.message());
  if (std::filesystem::equivalent(dir, out_dir, ec))
    return pg::invalid_argument("--out must differ from --model");

  // config.json: the original, plus what this folder holds.
  PG_ASSIGN_OR_RETURN(std::string config_text, pg::io::read_file(dir + "/config.json"));
  nlohmann::json config = nlohmann::json::parse(config_text);
  config["paligemma_cpp"] = {{"format_version", 2},
                             {"weights", dtype},
                             {"block_size", pg::kQuantBlock},
                             {"file", pg::model::kQuantizedWeightsFile}};
  const std::string config_out = config.dump(2) + "\n";
  PG_RETURN_IF_ERROR(
      pg::io::write_file_atomic(out_dir + "/config.json", config_out.data(), config_out.size()));
  PG_ASSIGN_OR_RETURN(std::string tok, pg::io::read_file(dir + "/tokenizer.model"));
  PG_RETURN_IF_ERROR(
      pg::io::write_file_atomic(out_dir + "/tokenizer.model", tok.data(), tok.size()));

  auto& weights = const_cast<pg::model::PaliGemmaWeights&>(model->weights());
  const std::vector<pg::io::TensorToWrite> tensors =
      pg::model::export_weights(model->config(), weights);
  const std::map<std::string, std::string> metadata = {
      {"format", "paligemma-cpp"},
      {"weights", dtype},
      {"block_size", std::to_string(pg::kQuantBlock)},
      {"layout",
       "I8: codes [rows, blocks*32], w = code * scale; U8: 4-bit codes [rows, blocks*16], byte "
       "i of a block = code i | code 16+i << 4, w = (code - 8) * scale; in both, a row's blocks "
       "in groups of 16 (the last of n <= 16) stored as runs of 4n bytes, bytes 4j..4j+3 of run t "
       "= bytes 4t..4t+3 of the group's block j; NAME.scales: F32 [rows, blocks] (weights w8a8: "
       "every block of a row holds the row's scale)"},
      {"block_layout", pg::model::kGroupLayout}};
  return pg::io::write_safetensors(out_dir + "/" + pg::model::kQuantizedWeightsFile, tensors,
                                   metadata);
}

void set_threads(int n) { pg::set_num_threads(n); }
void set_dump_dir(const std::string& dir) { pg::model::set_dump_dir(dir); }

Status write_npy(const std::string& path, const float* data, const std::vector<int64_t>& shape) {
  return pg::io::write_npy(path, data, shape);
}

}  // namespace paligemma
