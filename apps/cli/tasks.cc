// build/paligemma caption | ask | ocr | detect | segment | parse | decode-mask (run-batch:
// batch.cc)
//
// Each task command builds the released checkpoints' prompt, generates, and parses the answer
// (SPEC section 5); --json prints one document, --draw writes a picture of the result.
#include "paligemma/tasks.h"

#include <charconv>
#include <chrono>
#include <cstdio>
#include <memory>
#include <string>
#include <vector>

#include "command.h"
#include "task_json.h"

namespace cli {
namespace {

using nlohmann::json;

enum class Kind { kCaption, kAsk, kOcr, kDetect, kSegment };

const char* kind_name(Kind k) {
  switch (k) {
    case Kind::kCaption: return "caption";
    case Kind::kAsk: return "ask";
    case Kind::kOcr: return "ocr";
    case Kind::kDetect: return "detect";
    case Kind::kSegment: return "segment";
  }
  return "?";
}

struct TaskFlags {
  ModelFlags model;
  std::vector<std::string> images;
  std::string video;
  int frames = 16;
  int64_t max_tokens = 0;  // 0: the task's default
  bool json = false;
  std::string draw;
  std::string lang = "en";
  bool long_caption = false;
  std::string question;
  std::string objects;
  std::string vae;
  std::string mask_format = "rle";
};

int64_t default_max_tokens(Kind k, bool long_caption) {
  switch (k) {
    case Kind::kCaption: return long_caption ? 256 : 64;
    case Kind::kAsk: return 64;
    case Kind::kOcr: return 256;
    case Kind::kDetect: return 128;
    case Kind::kSegment: return 256;
  }
  return 64;
}

MaskFormat mask_format(const std::string& s) {
  return s == "png" ? MaskFormat::kPng : MaskFormat::kRle;
}

// The images of --image (in order) or the frames of --video.
paligemma::Result<std::vector<paligemma::RgbImage>> load_inputs(const TaskFlags& f) {
  if (!f.video.empty()) return paligemma::sample_video_frames(f.video, f.frames);
  std::vector<paligemma::RgbImage> out;
  for (const std::string& path : f.images) {
    PG_ASSIGN_OR_RETURN(paligemma::RgbImage img, paligemma::load_image(path));
    out.push_back(std::move(img));
  }
  return out;
}

// One line per object: "label<TAB>x0 y0 x1 y1[<TAB>mask WxH+X+Y area N]", or "error: ...".
void print_objects(const std::vector<paligemma::DetectedObject>& objects) {
  for (const auto& o : objects) {
    if (!o.ok()) {
      std::printf("error: %s (in '%s')\n", o.error.c_str(), o.source.c_str());
      continue;
    }
    std::printf("%s\t%.2f %.2f %.2f %.2f", o.label.c_str(), o.box->x0, o.box->y0, o.box->x1,
                o.box->y1);
    if (o.mask) {
      std::printf("\tmask %dx%d+%d+%d area %lld", o.mask->width, o.mask->height, o.mask->x0,
                  o.mask->y0, static_cast<long long>(o.mask->area()));
    }
    std::printf("\n");
  }
}

int run_task(Kind kind, const TaskFlags& f) {
  // Everything the user typed is checked before the model loads.
  std::vector<std::string> objects;
  if (kind == Kind::kDetect || kind == Kind::kSegment) {
    auto list = paligemma::split_objects(f.objects);
    if (!list.ok()) return fail("--objects: " + list.status().message());
    objects = std::move(*list);
  }
  if (kind == Kind::kCaption) {
    auto p = paligemma::caption_prompt(f.lang, f.long_caption);
    if (!p.ok()) return fail("--lang: " + p.status().message());
  }
  if (kind == Kind::kAsk) {
    auto p = paligemma::ask_prompt(f.lang, f.question);
    if (!p.ok()) return fail(p.status().message());
  }
  std::unique_ptr<paligemma::Vae> vae;
  if (kind == Kind::kSegment) {
    auto v = paligemma::Vae::load(f.vae);
    if (!v.ok()) return fail(v.status().message());
    vae = std::make_unique<paligemma::Vae>(std::move(*v));
  }
  auto images = load_inputs(f);
  if (!images.ok()) return fail(images.status().message());
  if (images->empty()) return fail("no image given (--image FILE or --video FILE)");

  double load_s = 0;
  auto model = load_model(f.model, &load_s);
  if (!model.ok()) return fail(model.status().message());

  paligemma::GenerateOptions o;
  o.max_tokens = f.max_tokens > 0 ? f.max_tokens : default_max_tokens(kind, f.long_caption);
  paligemma::TextCallback stream;
  if (!f.json && (kind == Kind::kCaption || kind == Kind::kAsk || kind == Kind::kOcr)) {
    stream = [](std::string_view piece) {
      std::fwrite(piece.data(), 1, piece.size(), stdout);
      std::fflush(stdout);
      return true;
    };
  }
  auto r = [&]() -> paligemma::Result<paligemma::TaskResult> {
    switch (kind) {
      case Kind::kCaption:
        return paligemma::caption(*model, *images, f.lang, f.long_caption, o, stream);
      case Kind::kAsk: return paligemma::ask(*model, *images, f.question, f.lang, o, stream);
      case Kind::kOcr: return paligemma::ocr(*model, *images, o, stream);
      case Kind::kDetect: return paligemma::detect(*model, *images, objects, o);
      case Kind::kSegment: break;
    }
    return paligemma::segment(*model, *images, objects, *vae, o);
  }();
  if (!r.ok()) return fail(r.status().message());

  if (!f.draw.empty()) {
    paligemma::DrawOptions d;
    if (kind == Kind::kCaption || kind == Kind::kAsk || kind == Kind::kOcr) d.text = r->text;
    auto st = paligemma::draw_objects((*images)[0], r->objects, f.draw, d);
    if (!st.ok()) return fail(st.message());
  }
  const bool has_objects = kind == Kind::kDetect || kind == Kind::kSegment;
  if (f.json) {
    json j;
    j["task"] = kind_name(kind);
    j["prompt"] = r->prompt;
    j["text"] = r->text;
    j["image"] = {{"width", r->width}, {"height", r->height}, {"count", images->size()}};
    j["objects"] = objects_json(r->objects, mask_format(f.mask_format));
    add_generation_json(j, r->generation, load_s);
    std::printf("%s\n", dump_json(j).c_str());
  } else {
    if (has_objects) {
      std::printf("%s\n", r->text.c_str());
      print_objects(r->objects);
    } else {
      std::printf("\n");
    }
    std::fprintf(stderr, "[%s: %zu tokens, %s; load %.2f s, first token %.3f s]\n", kind_name(kind),
                 r->generation.ids.size(), r->generation.stop_reason.c_str(), load_s,
                 r->generation.timings.ttft_s);
  }
  return 0;
}

void add_task_command(CLI::App& app, Runners& runners, Kind kind, const char* help) {
  auto f = std::make_shared<TaskFlags>();
  CLI::App* cmd = app.add_subcommand(kind_name(kind), help);
  add_model_flags(cmd, f->model);
  CLI::Option_group* input = cmd->add_option_group("input", "The picture(s): --image or --video");
  input->add_option("--image", f->images,
                    "Image file (JPEG or PNG); repeat for several images, in order");
  auto* video =
      input->add_option("--video", f->video, "Video file: --frames frames sampled uniformly");
  input->require_option(1);
  cmd->add_option("--frames", f->frames, "Frames to sample from --video (default 16)")
      ->check(CLI::Range(1, 1024))
      ->needs(video);
  cmd->add_option("--max-tokens", f->max_tokens,
                  "Most tokens to generate (default: depends on the task)")
      ->check(CLI::PositiveNumber);
  cmd->add_flag("--json", f->json, "Print one JSON document: text, objects, ids, timings");
  cmd->add_option("--draw", f->draw, "Write the (first) image with the result drawn on it, as PNG");
  switch (kind) {
    case Kind::kCaption:
      cmd->add_option("--lang", f->lang, "Language code of the caption (default en)");
      cmd->add_flag("--long", f->long_caption,
                    "A long description (\"describe xx\") instead of a caption");
      break;
    case Kind::kAsk:
      cmd->add_option("--question", f->question, "The question, one line")->required();
      cmd->add_option("--lang", f->lang, "Language code of the question (default en)");
      break;
    case Kind::kOcr: break;
    case Kind::kSegment:
      cmd->add_option("--vae", f->vae, "The mask decoder: big_vision's vae-oid.npz")->required();
      cmd->add_option("--mask-format", f->mask_format,
                      "Masks in --json as rle (default) or png (base64)")
          ->check(CLI::IsMember({"rle", "png"}));
      [[fallthrough]];
    case Kind::kDetect:
      cmd->add_option("--objects", f->objects,
                      "What to find, separated by ';' (e.g. \"cat ; dog\")")
          ->required();
      break;
  }
  runners[kind_name(kind)] = [f, kind] { return run_task(kind, *f); };
}

// parse

struct ParseFlags {
  std::string task;
  int width = 0, height = 0;
  std::string image;  // instead of width and height; needed by --draw
  std::string draw;
  std::string vae;
  std::string text;
  std::string mask_format = "rle";
};

int run_parse(const ParseFlags& f) {
  std::unique_ptr<paligemma::Vae> vae;
  if (!f.vae.empty()) {
    auto v = paligemma::Vae::load(f.vae);
    if (!v.ok()) return fail(v.status().message());
    vae = std::make_unique<paligemma::Vae>(std::move(*v));
  }
  paligemma::RgbImage image;
  int width = f.width, height = f.height;
  if (!f.image.empty()) {
    auto img = paligemma::load_image(f.image);
    if (!img.ok()) return fail(img.status().message());
    image = std::move(*img);
    width = image.width;
    height = image.height;
  } else if (width < 1 || height < 1) {
    return fail("give the image size (--width and --height) or the image (--image)");
  } else if (!f.draw.empty()) {
    return fail("--draw needs --image (the picture to draw on)");
  }
  const auto task =
      f.task == "segment" ? paligemma::ObjectTask::kSegment : paligemma::ObjectTask::kDetect;
  auto objects = paligemma::parse_objects(f.text, task, width, height, vae.get());
  if (!objects.ok()) return fail(objects.status().message());
  if (!f.draw.empty()) {
    auto st = paligemma::draw_objects(image, *objects, f.draw);
    if (!st.ok()) return fail(st.message());
  }
  json j;
  j["task"] = f.task;
  j["image"] = {{"width", width}, {"height", height}};
  j["objects"] = objects_json(*objects, mask_format(f.mask_format));
  std::printf("%s\n", dump_json(j).c_str());
  return 0;
}

// decode-mask

struct DecodeMaskFlags {
  std::string vae;
  std::string codes;
  std::string out;
};

// "1,2, 3" -> {1, 2, 3}; errors name the bad item.
paligemma::Result<std::vector<int>> parse_codes(const std::string& s) {
  std::vector<int> out;
  size_t start = 0;
  while (true) {
    size_t end = s.find(',', start);
    if (end == std::string::npos) end = s.size();
    size_t a = start, b = end;
    while (a < b && s[a] == ' ') ++a;
    while (b > a && s[b - 1] == ' ') --b;
    int v = 0;
    const auto [ptr, ec] = std::from_chars(s.data() + a, s.data() + b, v);
    if (a == b || ec != std::errc() || ptr != s.data() + b) {
      return paligemma::Status(paligemma::StatusCode::kInvalidArgument,
                               "--codes: '" + s.substr(a, b - a) + "' (item " +
                                   std::to_string(out.size()) + ") is not an integer");
    }
    out.push_back(v);
    if (end == s.size()) break;
    start = end + 1;
  }
  return out;
}

int run_decode_mask(const DecodeMaskFlags& f) {
  auto codes = parse_codes(f.codes);
  if (!codes.ok()) return fail(codes.status().message());
  auto vae = paligemma::Vae::load(f.vae);
  if (!vae.ok()) return fail(vae.status().message());
  auto logits = vae->decode(*codes);
  if (!logits.ok()) return fail("--codes: " + logits.status().message());
  const int64_t s = vae->mask_size();
  auto st = paligemma::write_npy(f.out, logits->data(), {s, s});
  if (!st.ok()) return fail(st.message());
  return 0;
}

}  // namespace

void register_tasks(CLI::App& app, Runners& runners) {
  add_task_command(app, runners, Kind::kCaption,
                   "Caption images (\"caption xx\", or \"describe xx\" with --long)");
  add_task_command(app, runners, Kind::kAsk,
                   "Answer a question about images (\"answer xx QUESTION\")");
  add_task_command(app, runners, Kind::kOcr, "Read the text in an image (\"ocr\")");
  add_task_command(app, runners, Kind::kDetect,
                   "Find objects: boxes with labels (\"detect a ; b\")");
  add_task_command(app, runners, Kind::kSegment,
                   "Segment objects: boxes and masks (\"segment a ; b\")");

  auto pf = std::make_shared<ParseFlags>();
  CLI::App* parse =
      app.add_subcommand("parse", "Parse a detect/segment answer into JSON boxes and masks");
  parse->add_option("--task", pf->task, "detect or segment")
      ->required()
      ->check(CLI::IsMember({"detect", "segment"}));
  auto* image = parse->add_option("--image", pf->image,
                                  "The image (its size frames the boxes; --draw draws on it)");
  parse->add_option("--width", pf->width, "Image width in pixels")
      ->check(CLI::Range(1, 1 << 20))
      ->excludes(image);
  parse->add_option("--height", pf->height, "Image height in pixels")
      ->check(CLI::Range(1, 1 << 20))
      ->excludes(image);
  parse->add_option("--draw", pf->draw, "Write the image with the objects drawn on it, as PNG")
      ->needs(image);
  parse->add_option("--vae", pf->vae, "vae-oid.npz: decode segmentation masks");
  parse->add_option("--text", pf->text, "The model's output")->required();
  parse->add_option("--mask-format", pf->mask_format, "Masks as rle (default) or png (base64)")
      ->check(CLI::IsMember({"rle", "png"}));
  runners["parse"] = [pf] { return run_parse(*pf); };

  auto df = std::make_shared<DecodeMaskFlags>();
  CLI::App* dm =
      app.add_subcommand("decode-mask", "Decode 16 segmentation codes to mask logits (.npy)");
  dm->add_option("--vae", df->vae, "big_vision's vae-oid.npz")->required();
  dm->add_option("--codes", df->codes, "The codes, comma-separated: c0,c1,...,c15")->required();
  dm->add_option("--out", df->out, "Output: float32 .npy [64, 64] mask logits")->required();
  runners["decode-mask"] = [df] { return run_decode_mask(*df); };

  register_batch(app, runners);
}

}  // namespace cli
