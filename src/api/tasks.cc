// The task layer's public face (include/paligemma/tasks.h) over src/tasks and the runtime.
#include "paligemma/tasks.h"

#include <cmath>

#include "image/image.h"
#include "io/mapped_file.h"
#include "model_impl.h"
#include "tasks/draw.h"
#include "tasks/mask.h"
#include "tasks/parse.h"
#include "tasks/prompts.h"
#include "tasks/vae.h"
#include "tasks/video.h"

namespace paligemma {

struct Vae::Impl {
  pg::tasks::VaeDecoder decoder;
};

namespace {

RgbImage to_public(pg::image::Image img) {
  RgbImage out;
  out.width = img.width;
  out.height = img.height;
  out.rgb = std::move(img.rgb);
  return out;
}

// RgbImage -> pg::image::Image, checking the buffer's size. `what` names it in errors.
Result<pg::image::Image> to_internal(const RgbImage& img, const std::string& what) {
  if (img.width < 1 || img.height < 1 ||
      img.rgb.size() != static_cast<size_t>(img.width) * static_cast<size_t>(img.height) * 3) {
    return pg::invalid_argument(
        what + ": an RGB image of " + std::to_string(img.width) + "x" + std::to_string(img.height) +
        " needs width * height * 3 bytes, got " + std::to_string(img.rgb.size()));
  }
  pg::image::Image out;
  out.width = img.width;
  out.height = img.height;
  out.rgb = img.rgb;
  return out;
}

// Generation with a task prompt; fills everything but the objects.
Result<TaskResult> run_task(const Model& model, const std::vector<RgbImage>& images,
                            Result<std::string> prompt, const GenerateOptions& options,
                            const TextCallback& on_text) {
  if (!prompt.ok()) return prompt.status();
  if (images.empty()) return pg::invalid_argument("no image given");
  TaskResult r;
  r.prompt = std::move(*prompt);
  r.width = images[0].width;
  r.height = images[0].height;
  PG_ASSIGN_OR_RETURN(r.generation,
                      generate_from_images(model, images, r.prompt, options, on_text));
  r.text = r.generation.text;
  return r;
}

}  // namespace

Result<RgbImage> load_image(const std::string& path) {
  PG_ASSIGN_OR_RETURN(pg::image::Image img, pg::image::load_image(path));
  return to_public(std::move(img));
}

Result<RgbImage> decode_image(std::string_view bytes, const std::string& name) {
  PG_ASSIGN_OR_RETURN(
      pg::image::Image img,
      pg::image::decode_image(reinterpret_cast<const uint8_t*>(bytes.data()), bytes.size(), name));
  return to_public(std::move(img));
}

Result<std::vector<RgbImage>> sample_video_frames(const std::string& path, int num_frames) {
  PG_ASSIGN_OR_RETURN(std::vector<pg::image::Image> frames,
                      pg::tasks::sample_video_frames(path, num_frames));
  std::vector<RgbImage> out;
  out.reserve(frames.size());
  for (pg::image::Image& f : frames) out.push_back(to_public(std::move(f)));
  return out;
}

Result<Generation> generate_from_images(const Model& model, const std::vector<RgbImage>& images,
                                        const std::string& prompt, const GenerateOptions& options,
                                        const TextCallback& on_text) {
  std::vector<pg::Tensor> pixels;
  pixels.reserve(images.size());
  for (size_t i = 0; i < images.size(); ++i) {
    PG_ASSIGN_OR_RETURN(pg::image::Image img, to_internal(images[i], "image " + std::to_string(i)));
    PG_ASSIGN_OR_RETURN(pg::Tensor p, model.impl().session->pixel_values(img));
    pixels.push_back(std::move(p));
  }
  return model.impl().run(pixels, prompt, options, on_text);
}

// Mask

std::vector<int64_t> Mask::rle() const {
  pg::tasks::BinaryMask m{x0, y0, width, height, bits};
  return pg::tasks::rle_encode(m);
}

Result<std::string> Mask::png() const {
  if (bits.size() !=
      static_cast<size_t>(std::max(width, 0)) * static_cast<size_t>(std::max(height, 0))) {
    return pg::invalid_argument("mask of " + std::to_string(width) + "x" + std::to_string(height) +
                                " holds " + std::to_string(bits.size()) + " values");
  }
  pg::tasks::BinaryMask m{x0, y0, width, height, bits};
  return pg::tasks::mask_png(m);
}

int64_t Mask::area() const {
  int64_t n = 0;
  for (uint8_t b : bits) n += b ? 1 : 0;
  return n;
}

// Vae

Vae::Vae(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}
Vae::Vae(Vae&&) noexcept = default;
Vae& Vae::operator=(Vae&&) noexcept = default;
Vae::~Vae() = default;

Result<Vae> Vae::load(const std::string& npz_path) {
  auto impl = std::make_unique<Impl>();
  PG_ASSIGN_OR_RETURN(impl->decoder, pg::tasks::VaeDecoder::load(npz_path));
  return Vae(std::move(impl));
}

int Vae::codebook_size() const { return impl_->decoder.codebook_size(); }
int Vae::num_codes() const { return impl_->decoder.num_codes(); }
int Vae::mask_size() const { return impl_->decoder.mask_size(); }
Result<std::vector<float>> Vae::decode(const std::vector<int>& codes) const {
  return impl_->decoder.decode(codes);
}

// Parsing

Result<std::vector<DetectedObject>> parse_objects(std::string_view text, ObjectTask task, int width,
                                                  int height, const Vae* vae) {
  const auto t = task == ObjectTask::kSegment ? pg::tasks::ObjectTask::kSegment
                                              : pg::tasks::ObjectTask::kDetect;
  PG_ASSIGN_OR_RETURN(std::vector<pg::tasks::ParsedObject> parsed,
                      pg::tasks::parse_objects(text, t, width, height));
  std::vector<DetectedObject> out;
  out.reserve(parsed.size());
  for (pg::tasks::ParsedObject& p : parsed) {
    DetectedObject o;
    o.label = std::move(p.label);
    o.source = std::move(p.source);
    o.error = std::move(p.error);
    o.seg_codes = std::move(p.seg_codes);
    if (p.has_box) {
      o.box = Box{p.x0, p.y0, p.x1, p.y1};
      o.locs.assign(p.locs.begin(), p.locs.end());
    }
    if (vae != nullptr && o.box && !o.seg_codes.empty()) {
      auto logits = vae->decode(o.seg_codes);
      if (!logits.ok()) {
        if (o.error.empty()) o.error = logits.status().message();
      } else {
        const int s = vae->mask_size();
        pg::tasks::BinaryMask m = pg::tasks::mask_in_box(logits->data(), s, o.box->x0, o.box->y0,
                                                         o.box->x1, o.box->y1, width, height);
        Mask mask;
        mask.x0 = m.x0;
        mask.y0 = m.y0;
        mask.width = m.width;
        mask.height = m.height;
        mask.bits = std::move(m.bits);
        mask.logits = std::move(*logits);
        mask.logits_size = s;
        o.mask = std::move(mask);
      }
    }
    out.push_back(std::move(o));
  }
  return out;
}

// Prompts

Result<std::vector<std::string>> split_objects(const std::string& list) {
  return pg::tasks::split_objects(list);
}
Result<std::string> caption_prompt(const std::string& lang, bool long_caption) {
  return pg::tasks::caption_prompt(lang, long_caption);
}
Result<std::string> ask_prompt(const std::string& lang, const std::string& question) {
  return pg::tasks::ask_prompt(lang, question);
}
std::string ocr_prompt() { return pg::tasks::ocr_prompt(); }
Result<std::string> detect_prompt(const std::vector<std::string>& objects) {
  return pg::tasks::detect_prompt(objects);
}
Result<std::string> segment_prompt(const std::vector<std::string>& objects) {
  return pg::tasks::segment_prompt(objects);
}

// Tasks

Result<TaskResult> caption(const Model& model, const std::vector<RgbImage>& images,
                           const std::string& lang, bool long_caption,
                           const GenerateOptions& options, const TextCallback& on_text) {
  return run_task(model, images, caption_prompt(lang, long_caption), options, on_text);
}

Result<TaskResult> ask(const Model& model, const std::vector<RgbImage>& images,
                       const std::string& question, const std::string& lang,
                       const GenerateOptions& options, const TextCallback& on_text) {
  return run_task(model, images, ask_prompt(lang, question), options, on_text);
}

Result<TaskResult> ocr(const Model& model, const std::vector<RgbImage>& images,
                       const GenerateOptions& options, const TextCallback& on_text) {
  return run_task(model, images, ocr_prompt(), options, on_text);
}

Result<TaskResult> detect(const Model& model, const std::vector<RgbImage>& images,
                          const std::vector<std::string>& objects, const GenerateOptions& options) {
  PG_ASSIGN_OR_RETURN(TaskResult r,
                      run_task(model, images, detect_prompt(objects), options, nullptr));
  PG_ASSIGN_OR_RETURN(r.objects, parse_objects(r.text, ObjectTask::kDetect, r.width, r.height));
  return r;
}

Result<TaskResult> segment(const Model& model, const std::vector<RgbImage>& images,
                           const std::vector<std::string>& objects, const Vae& vae,
                           const GenerateOptions& options) {
  PG_ASSIGN_OR_RETURN(TaskResult r,
                      run_task(model, images, segment_prompt(objects), options, nullptr));
  PG_ASSIGN_OR_RETURN(r.objects,
                      parse_objects(r.text, ObjectTask::kSegment, r.width, r.height, &vae));
  return r;
}

// Drawing

Result<std::string> render_objects(const RgbImage& image,
                                   const std::vector<DetectedObject>& objects,
                                   const DrawOptions& options) {
  PG_ASSIGN_OR_RETURN(pg::image::Image img, to_internal(image, "the image to draw on"));
  std::vector<pg::tasks::BinaryMask> masks;
  masks.reserve(objects.size());  // stable addresses for DrawObject::mask
  std::vector<pg::tasks::DrawObject> items;
  for (const DetectedObject& o : objects) {
    if (!o.ok() || !o.box) continue;
    const Box& b = *o.box;
    if (!std::isfinite(b.x0) || !std::isfinite(b.y0) || !std::isfinite(b.x1) ||
        !std::isfinite(b.y1))
      continue;
    pg::tasks::DrawObject d;
    d.label = o.label;
    d.x0 = b.x0;
    d.y0 = b.y0;
    d.x1 = b.x1;
    d.y1 = b.y1;
    if (o.mask && o.mask->width > 0 && o.mask->height > 0 &&
        o.mask->bits.size() ==
            static_cast<size_t>(o.mask->width) * static_cast<size_t>(o.mask->height)) {
      masks.push_back({o.mask->x0, o.mask->y0, o.mask->width, o.mask->height, o.mask->bits});
      d.mask = &masks.back();
    }
    items.push_back(std::move(d));
  }
  pg::tasks::DrawOptions d;
  d.text = options.text;
  d.mask_alpha = options.mask_alpha;
  return pg::tasks::render_png(img, items, d);
}

Status draw_objects(const RgbImage& image, const std::vector<DetectedObject>& objects,
                    const std::string& path, const DrawOptions& options) {
  auto png = render_objects(image, objects, options);
  if (!png.ok()) return png.status().with_context(path);
  return pg::io::write_file_atomic(path, png->data(), png->size());
}

std::string base64_encode(std::string_view bytes) { return pg::tasks::base64_encode(bytes); }

}  // namespace paligemma
