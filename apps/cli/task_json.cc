#include "task_json.h"

namespace cli {

using nlohmann::json;

json object_json(const paligemma::DetectedObject& o, MaskFormat format) {
  json j;
  j["label"] = o.label;
  if (o.box) {
    j["box"] = {{"x0", o.box->x0}, {"y0", o.box->y0}, {"x1", o.box->x1}, {"y1", o.box->y1}};
    j["loc"] = o.locs;
  }
  if (!o.seg_codes.empty()) j["codes"] = o.seg_codes;
  std::string error = o.error;
  if (o.mask) {
    const paligemma::Mask& m = *o.mask;
    json mj = {
        {"x0", m.x0}, {"y0", m.y0}, {"width", m.width}, {"height", m.height}, {"area", m.area()}};
    if (format == MaskFormat::kPng) {
      auto png = m.png();
      if (png.ok()) {
        mj["png_base64"] = paligemma::base64_encode(*png);
      } else if (error.empty()) {
        error = png.status().message();
      }
    } else {
      mj["rle"] = m.rle();
    }
    j["mask"] = std::move(mj);
  }
  if (!error.empty()) {
    j["error"] = error;
    j["text"] = o.source;
  }
  return j;
}

json objects_json(const std::vector<paligemma::DetectedObject>& objects, MaskFormat format) {
  json a = json::array();
  for (const auto& o : objects) a.push_back(object_json(o, format));
  return a;
}

void add_generation_json(json& j, const paligemma::Generation& g, double load_s) {
  const paligemma::Timings& tm = g.timings;
  const double steps = static_cast<double>(g.ids.size()) - 1.0;
  const double tok_s = steps > 0 && tm.decode_s > 0 ? steps / tm.decode_s : 0.0;
  j["ids"] = g.ids;
  j["prompt_tokens"] = g.prompt_tokens;
  j["stop_reason"] = g.stop_reason;
  j["timings"] = {{"load_s", load_s},    {"vision_s", tm.vision_s}, {"prefill_s", tm.prefill_s},
                  {"ttft_s", tm.ttft_s}, {"decode_s", tm.decode_s}, {"decode_tok_s", tok_s}};
}

std::string dump_json(const json& j) {
  return j.dump(-1, ' ', false, json::error_handler_t::replace);
}

}  // namespace cli
