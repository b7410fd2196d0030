// Tasks on top of generation: the released checkpoints' prompts, and their answers parsed
// into structured results (SPEC section 5).
//
//   auto model = paligemma::Model::load("paligemma-3b-mix-224");
//   auto img = paligemma::load_image("street.jpg");
//   auto r = paligemma::detect(*model, {*img}, {"car", "person"}, {});
//   for (const auto& o : r->objects) if (o.ok()) { o.label; o.box->x0; ... }
//   auto vae = paligemma::Vae::load("vae-oid.npz");
//   auto s = paligemma::segment(*model, {*img}, {"car"}, *vae, {});   // o.mask->bits
//   paligemma::draw_objects(*img, s->objects, "out.png");
//
// Boxes are in pixels of the original (first) image, before any resizing to the model's
// input size.
#pragma once

#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "paligemma/paligemma.h"

namespace paligemma {

// 8-bit RGB pixels, interleaved, row-major: rgb[(y * width + x) * 3 + c].
struct RgbImage {
  int width = 0;
  int height = 0;
  std::vector<uint8_t> rgb;
};

// Decodes a JPEG (EXIF orientation applied) or PNG file. Errors name the file.
Result<RgbImage> load_image(const std::string& path);
// The same from encoded bytes (e.g. an upload); `name` appears in error messages.
Result<RgbImage> decode_image(std::string_view bytes, const std::string& name);
// `num_frames` frames sampled uniformly over a video file (any container and codec FFmpeg
// decodes): frame floor((i + 0.5) * F / num_frames) of its F frames. Errors name the file.
Result<std::vector<RgbImage>> sample_video_frames(const std::string& path, int num_frames);
// Generation from decoded images (e.g. video frames), in order: their token blocks come
// first, then BOS and the prompt, as Model::generate does for files.
Result<Generation> generate_from_images(const Model& model, const std::vector<RgbImage>& images,
                                        const std::string& prompt, const GenerateOptions& options,
                                        const TextCallback& on_text = nullptr);

// A box in pixels of the image: (x0, y0) top-left, (x1, y1) bottom-right, x = loc/1024*width.
struct Box {
  double x0 = 0, y0 = 0, x1 = 0, y1 = 0;
};

// A binary mask over the pixel rectangle [x0, x0 + width) x [y0, y0 + height): the pixels
// whose centres lie in the object's box.
struct Mask {
  int x0 = 0, y0 = 0;
  int width = 0, height = 0;
  std::vector<uint8_t> bits;  // [height, width], row-major, 1 = object
  std::vector<float> logits;  // [logits_size, logits_size]: the decoder's output
  int logits_size = 0;

  // Row-major run lengths, alternating 0-runs and 1-runs, starting with a (possibly empty)
  // 0-run: {2, 3, 1} = 0 0 1 1 1 0. They sum to width * height.
  std::vector<int64_t> rle() const;
  // An 8-bit greyscale PNG (0 background, 255 object), width x height.
  Result<std::string> png() const;
  int64_t area() const;  // pixels set
};

// One entry of a detection / segmentation answer.
struct DetectedObject {
  std::string label;
  std::optional<Box> box;      // when its 4 <loc> tokens are well formed
  std::vector<int> locs;       // the 4 loc values y0 x0 y1 x1 (0..1023), with box
  std::vector<int> seg_codes;  // the 16 <seg> codes (0..127), when present
  std::optional<Mask> mask;    // segmentation with a Vae
  std::string error;           // non-empty: what is wrong with this entry
  std::string source;          // the entry as the model wrote it
  bool ok() const { return error.empty(); }
};

// The segmentation VQ-VAE decoder (big_vision's vae-oid.npz).
class Vae {
 public:
  // Reads `_vq_vae._embedding` and `decoder.*` from the .npz; every size comes from the file.
  static Result<Vae> load(const std::string& npz_path);
  Vae(Vae&&) noexcept;
  Vae& operator=(Vae&&) noexcept;
  ~Vae();

  int codebook_size() const;  // codes are in [0, codebook_size)
  int num_codes() const;      // codes per mask (16)
  int mask_size() const;      // the logits are [mask_size, mask_size] (64)
  // codes -> mask logits [mask_size, mask_size], row-major; > 0 means "object".
  Result<std::vector<float>> decode(const std::vector<int>& codes) const;

  struct Impl;
  const Impl& impl() const { return *impl_; }

 private:
  explicit Vae(std::unique_ptr<Impl> impl);
  std::unique_ptr<Impl> impl_;
};

enum class ObjectTask { kDetect, kSegment };

// Parses a detection (`<loc>`x4 label ; ...) or segmentation (`<loc>`x4 `<seg>`x16 label ; ...)
// answer for an image of width x height pixels. Malformed entries carry an error and never
// stop the others. With a Vae, segmentation entries get their mask. Errors only for a bad
// image size.
Result<std::vector<DetectedObject>> parse_objects(std::string_view text, ObjectTask task, int width,
                                                  int height, const Vae* vae = nullptr);

// The released checkpoints' prompts. Errors name the bad field.
Result<std::vector<std::string>> split_objects(const std::string& list);  // "cat ; dog"
Result<std::string> caption_prompt(const std::string& lang,
                                   bool long_caption);  // caption/describe xx
Result<std::string> ask_prompt(const std::string& lang,
                               const std::string& question);                  // answer xx ...
std::string ocr_prompt();                                                     // ocr
Result<std::string> detect_prompt(const std::vector<std::string>& objects);   // detect a ; b
Result<std::string> segment_prompt(const std::vector<std::string>& objects);  // segment a ; b

struct TaskResult {
  std::string prompt;
  std::string text;                     // the raw answer
  std::vector<DetectedObject> objects;  // detect / segment
  Generation generation;
  int width = 0, height = 0;  // of the first image: the boxes' frame
};

// Each runs generation on `images` (one, several, or video frames) with the task's prompt.
// Boxes are relative to the first image.
Result<TaskResult> caption(const Model& model, const std::vector<RgbImage>& images,
                           const std::string& lang, bool long_caption,
                           const GenerateOptions& options, const TextCallback& on_text = nullptr);
Result<TaskResult> ask(const Model& model, const std::vector<RgbImage>& images,
                       const std::string& question, const std::string& lang,
                       const GenerateOptions& options, const TextCallback& on_text = nullptr);
Result<TaskResult> ocr(const Model& model, const std::vector<RgbImage>& images,
                       const GenerateOptions& options, const TextCallback& on_text = nullptr);
Result<TaskResult> detect(const Model& model, const std::vector<RgbImage>& images,
                          const std::vector<std::string>& objects, const GenerateOptions& options);
Result<TaskResult> segment(const Model& model, const std::vector<RgbImage>& images,
                           const std::vector<std::string>& objects, const Vae& vae,
                           const GenerateOptions& options);

struct DrawOptions {
  std::string text;          // drawn in a band at the bottom (a caption, an answer) if not empty
  double mask_alpha = 0.45;  // opacity of the masks
};
// The image with each valid object's mask (translucent), box and label drawn on it, as PNG
// bytes; entries with an error are skipped. draw_objects writes them to `path`.
Result<std::string> render_objects(const RgbImage& image,
                                   const std::vector<DetectedObject>& objects,
                                   const DrawOptions& options = {});
Status draw_objects(const RgbImage& image, const std::vector<DetectedObject>& objects,
                    const std::string& path, const DrawOptions& options = {});

// Standard base64 (RFC 4648, '=' padded), e.g. for Mask::png() in JSON.
std::string base64_encode(std::string_view bytes);

}  // namespace paligemma
