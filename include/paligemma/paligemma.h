// The public C++ API of the PaliGemma engine. Apps (the CLI, the server) use only this.
//
//   auto model = paligemma::Model::load("paligemma-3b-mix-224");
//   if (!model.ok()) { /* model.status().message() names what is wrong */ }
//   paligemma::GenerateOptions opt;
//   auto out = model->generate({"cat.jpg"}, "caption en", opt,
//                              [](std::string_view piece) { fputs(...); return true; });
#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "base/status.h"

namespace paligemma {

using Status = pg::Status;
using StatusCode = pg::StatusCode;
template <typename T>
using Result = pg::Result<T>;

struct ModelInfo {
  std::string decoder;          // "gemma" (PaliGemma) or "gemma2" (PaliGemma 2)
  int64_t image_size = 0;       // pixels per side of the encoder's input
  int64_t image_tokens = 0;     // tokens per image
  int64_t vocab_size = 0;       // rows of the embedding (width of a logits row)
  int64_t tokenizer_vocab = 0;  // pieces of tokenizer.model: generated ids stay below this
  int64_t text_hidden_size = 0;
  int64_t context_length = 0;  // prompt + generated tokens at most
  int64_t num_parameters = 0;
};

struct GenerateOptions {
  int64_t max_tokens = 32;
  bool greedy = true;  // false: sample with the settings below
  float temperature = 1.0f;
  int top_k = 0;       // 0: off
  float top_p = 1.0f;  // 1: off
  uint64_t seed = 0;
  bool keep_logits = false;  // fill Generation::logits
};

struct Timings {
  double vision_s = 0;   // image encoder + projector
  double prefill_s = 0;  // decoder over the prompt
  double ttft_s = 0;     // image + prefill + first token
  double decode_s = 0;   // from the first token to the end
};

struct Generation {
  std::vector<int> ids;       // generated ids, in order; a final EOS is included
  std::string text;           // decoded ids (<loc>/<seg> pieces kept)
  std::vector<float> logits;  // [ids.size(), vocab_size] if keep_logits: row i chose ids[i]
  int64_t vocab_size = 0;
  int64_t prompt_tokens = 0;
  std::string stop_reason;  // "eos", "max_tokens", "context", "stopped"
  Timings timings;
};

// Receives each new piece of generated text; return false to stop.
using TextCallback = std::function<bool(std::string_view)>;

struct LoadOptions {
  // How matrices are held while running: "auto" (as stored, memory-mapped), "f32",
  // "bf16", "int8" (q8 blocks of 32, int8 x int8 products), "q4" (4-bit blocks of 32
  // for the decoder, the vision tower in q8) or "w8a8" (as int8 with one scale per output
  // channel; on AMX the prefill multiplies int8 tiles, x quantized per row).
  std::string dtype = "auto";
};

class Model {
 public:
  // Loads a checkpoint folder as Hugging Face ships it: config.json, model.safetensors or
  // shards with model.safetensors.index.json, tokenizer.model.
  // Process-wide side effect (glibc): loading tunes malloc to keep freed blocks for reuse
  // (mmap threshold 32 MiB, trim threshold 1 GiB) -- a forward pass frees and re-allocates
  // megabytes per layer, and handing them back to the kernel cost more than the arithmetic.
  static Result<Model> load(const std::string& dir, const LoadOptions& options = {});

  Model(Model&&) noexcept;
  Model& operator=(Model&&) noexcept;
  ~Model();

  const ModelInfo& info() const;
  // Things worth telling the user about the checkpoint (unexpected tensors, ...).
  const std::vector<std::string>& warnings() const;

  // Images (JPEG or PNG files) in order, then the prompt (e.g. "caption en").
  Result<Generation> generate(const std::vector<std::string>& image_paths,
                              const std::string& prompt, const GenerateOptions& options,
                              const TextCallback& on_text = nullptr) const;
  // The same with encoded image bytes (JPEG or PNG) instead of paths.
  Result<Generation> generate_from_bytes(const std::vector<std::string>& images,
                                         const std::string& prompt, const GenerateOptions& options,
                                         const TextCallback& on_text = nullptr) const;

  // Inspection, for tests and tools.
  // pixel_values [3, S, S] of an image file.
  Result<std::vector<float>> pixel_values(const std::string& image_path) const;
  // Image features [n * image_tokens, text_hidden_size]: projector output / sqrt(hidden).
  Result<std::vector<float>> image_features(const std::vector<std::string>& image_paths) const;
  // The prompt's input ids: image tokens, BOS, encode(prompt + "\n").
  Result<std::vector<int>> prompt_ids(const std::string& prompt, int64_t num_images) const;
  std::string decode(const std::vector<int>& ids) const;

  // The implementation, for the library's own other parts (src/api); opaque to apps.
  struct Impl;
  const Impl& impl() const { return *impl_; }

 private:
  explicit Model(std::unique_ptr<Impl> impl);
  std::unique_ptr<Impl> impl_;
};

// Writes a copy of checkpoint `dir` into `out_dir` with its weights in `dtype` ("int8",
// "q4", "w8a8", "bf16" or "f32"): config.json (with a "paligemma_cpp" entry naming the format),
// tokenizer.model, and model.pgq.safetensors, which loads without re-quantising.
Status quantize(const std::string& dir, const std::string& dtype, const std::string& out_dir);

// Threads for every parallel loop of the process (<= 0: all cores).
void set_threads(int n);
// Writes every named intermediate tensor of later runs to DIR/NAME.npy ("" stops).
void set_dump_dir(const std::string& dir);
// Writes a float32 NumPy array.
Status write_npy(const std::string& path, const float* data, const std::vector<int64_t>& shape);

}  // namespace paligemma
