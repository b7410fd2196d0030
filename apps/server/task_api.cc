// POST /v1/caption, /v1/ask, /v1/detect, /v1/segment on the task layer
// (include/paligemma/tasks.h): one image (base64 in JSON, or a multipart/form-data upload)
// and the task's input; the answer is the task's JSON, in the shape `paligemma <task> --json`
// prints: {"task", "prompt", "text", "width", "height", "objects"? [{"label", "box"
// {x0,y0,x1,y1} (pixels), "loc", "codes"?, "mask"? {x0,y0,width,height,area, rle |
// png_base64}, "error"?, "text"?}], "ids", "prompt_tokens", "stop_reason", "timings"}.
// With "stream": true the text comes as events {"text": ...} while it is generated, then
// {"result": {...}} and "data: [DONE]".
#include <sys/mman.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <nlohmann/json.hpp>

#include "server_impl.h"

namespace pgserve {
namespace {

using nlohmann::json;

paligemma::GenerateOptions task_options(const Sampling& s) {
  paligemma::GenerateOptions o;
  o.max_tokens = s.max_tokens;
  o.greedy = s.greedy;
  o.temperature = s.temperature;
  o.top_k = s.top_k;
  o.top_p = s.top_p;
  o.seed = s.seed;
  return o;
}

// Takes encoded image bytes; returns the decoded image (EXIF orientation applied) through
// the task layer's loader, which reads files: the bytes go to an anonymous in-memory file.
paligemma::Result<paligemma::RgbImage> decode_upload(const std::string& bytes) {
  const int fd = memfd_create("pg-upload", MFD_CLOEXEC);
  if (fd < 0)
    return paligemma::Status(paligemma::StatusCode::kInternal,
                             std::string("memfd_create: ") + std::strerror(errno));
  size_t done = 0;
  while (done < bytes.size()) {
    const ssize_t n = ::write(fd, bytes.data() + done, bytes.size() - done);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) {
      ::close(fd);
      return paligemma::Status(paligemma::StatusCode::kInternal, "cannot buffer the image");
    }
    done += static_cast<size_t>(n);
  }
  const std::string path = "/proc/self/fd/" + std::to_string(fd);
  auto img = paligemma::load_image(path);
  ::close(fd);
  if (img.ok()) return img;
  // Name the upload, not the descriptor.
  std::string message = img.status().message();
  for (size_t p; (p = message.find(path)) != std::string::npos;)
    message.replace(p, path.size(), "image");
  return paligemma::Status(img.status().code(), message);
}

// One object as JSON, as the CLI's --json writes it.
json object_json(const paligemma::DetectedObject& o, bool png) {
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
    if (png) {
      auto bytes = m.png();
      if (bytes.ok()) {
        mj["png_base64"] = paligemma::base64_encode(*bytes);
      } else if (error.empty()) {
        error = bytes.status().message();
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

// Takes the model, the mask decoder (may be null), the request and its prompt; returns the
// model call that answers it: decode, generate (streaming through on_text), parse objects.
Work task_work(std::shared_ptr<const paligemma::Model> model,
               std::shared_ptr<const paligemma::Vae> vae, TaskRequest t, std::string prompt) {
  return [model, vae, t = std::move(t), prompt = std::move(prompt)](
             const paligemma::TextCallback& on_text, JobOutput* out) -> paligemma::Status {
    auto img = decode_upload(t.image);
    if (!img.ok()) return img.status();
    auto g =
        paligemma::generate_from_images(*model, {*img}, prompt, task_options(t.sampling), on_text);
    if (!g.ok()) return g.status();
    json j = {{"task", task_name(t.kind)},
              {"prompt", prompt},
              {"text", g->text},
              {"width", img->width},
              {"height", img->height}};
    if (t.kind == TaskKind::kDetect || t.kind == TaskKind::kSegment) {
      const auto kind = t.kind == TaskKind::kDetect ? paligemma::ObjectTask::kDetect
                                                    : paligemma::ObjectTask::kSegment;
      auto objects = paligemma::parse_objects(g->text, kind, img->width, img->height, vae.get());
      if (!objects.ok()) return objects.status();
      j["objects"] = json::array();
      for (const auto& o : *objects) j["objects"].push_back(object_json(o, t.mask_format == "png"));
    }
    const paligemma::Timings& tm = g->timings;
    const double steps = static_cast<double>(g->ids.size()) - 1.0;
    j["ids"] = g->ids;
    j["prompt_tokens"] = g->prompt_tokens;
    j["stop_reason"] = g->stop_reason;
    j["timings"] = {{"vision_s", tm.vision_s},
                    {"prefill_s", tm.prefill_s},
                    {"ttft_s", tm.ttft_s},
                    {"decode_s", tm.decode_s},
                    {"decode_tok_s", steps > 0 && tm.decode_s > 0 ? steps / tm.decode_s : 0.0}};
    out->text = g->text;
    out->stop_reason = g->stop_reason;
    out->prompt_tokens = g->prompt_tokens;
    out->completion_tokens = static_cast<int64_t>(g->ids.size());
    out->decode_s = tm.decode_s;
    out->result_json = j.dump(-1, ' ', false, json::error_handler_t::replace);
    return paligemma::Status();
  };
}

// Takes the request; returns the task request from its JSON body or multipart form.
Parsed<TaskRequest> parse_task_request(Server::Impl& s, TaskKind kind,
                                       const httplib::Request& req) {
  if (!req.is_multipart_form_data()) return parse_task_json(kind, req.body, s.opt.limits);
  std::map<std::string, std::string> fields;
  std::string image;
  for (const auto& [name, part] : req.files) {
    if (name == "image" && (!part.filename.empty() || !part.content_type.empty())) {
      image = part.content;
    } else {
      fields[name] = part.content;
    }
  }
  return parse_task_form(kind, fields, image, s.opt.limits);
}

std::string text_event(const std::string& text) {
  return sse_event(json{{"text", text}}.dump(-1, ' ', false, json::error_handler_t::replace));
}

bool stream_task(Server::Impl& s, const std::shared_ptr<GenJob>& job, Clock::time_point deadline,
                 httplib::DataSink& sink) {
  const PumpEnd end = pump(s, *job, sink, deadline, text_event);
  record_job(s, *job, end == PumpEnd::kDone);
  if (end == PumpEnd::kDisconnected) return false;
  if (auto err = pump_error(end, *job)) {
    request_log().error_code = err->code;
    if (!sink_write(sink, sse_event(error_body(*err)))) return false;
  } else {
    request_log().finish_reason = finish_reason(job->output().stop_reason, false);
    if (!sink_write(sink, sse_event("{\"result\":" + job->output().result_json + "}")))
      return false;
  }
  if (!sink_write(sink, "data: [DONE]\n\n")) return false;
  sink.done();
  return true;
}

}  // namespace

paligemma::Result<std::string> task_prompt(const TaskRequest& t) {
  switch (t.kind) {
    case TaskKind::kCaption: return paligemma::caption_prompt(t.language, false);
    case TaskKind::kAsk: return paligemma::ask_prompt(t.language, t.question);
    case TaskKind::kDetect: return paligemma::detect_prompt(t.objects);
    case TaskKind::kSegment: return paligemma::segment_prompt(t.objects);
  }
  return paligemma::Status(paligemma::StatusCode::kInvalidArgument, "unknown task");
}

void handle_task(Server::Impl& s, TaskKind kind, const httplib::Request& req,
                 httplib::Response& res) {
  RequestLog& log = request_log();
  log.task = task_name(kind);
  const Clock::time_point arrival = log.started ? log.start : Clock::now();
  const Clock::time_point deadline = arrival + std::chrono::duration_cast<Clock::duration>(
                                                   std::chrono::duration<double>(s.opt.timeout_s));
  std::shared_ptr<const paligemma::Model> model = s.model();
  Parsed<TaskRequest> parsed = parse_task_request(s, kind, req);
  if (auto* e = std::get_if<ApiError>(&parsed)) return reply_error(s, res, *e);
  TaskRequest& t = std::get<TaskRequest>(parsed);
  log.stream = t.stream;
  auto prompt = task_prompt(t);
  if (!prompt.ok()) {
    ApiError e = error_from_status(prompt.status());
    e.code = "invalid_task_input";
    return reply_error(s, res, e);
  }
  if (auto ids = model->prompt_ids(*prompt, 1); !ids.ok()) {
    ApiError e = error_from_status(ids.status());
    if (e.status == 400) e.code = "prompt_too_long";
    return reply_error(s, res, e);
  }
  const bool stream = t.stream;
  auto job = std::make_shared<GenJob>(task_work(model, s.vae(), std::move(t), std::move(*prompt)),
                                      std::vector<std::string>{}, arrival, deadline);
  if (!submit_job(s, job, res)) return;
  if (stream) {
    res.set_header("Cache-Control", "no-cache");
    res.set_header("X-Accel-Buffering", "no");
    res.set_chunked_content_provider(
        "text/event-stream",
        [&s, job, deadline](size_t, httplib::DataSink& sink) {
          return stream_task(s, job, deadline, sink);
        },
        [job](bool success) {
          if (!success) job->cancel("disconnect");
        });
    return;
  }
  if (auto err = wait_done(s, *job, deadline)) {
    record_job(s, *job, false);
    return reply_error(s, res, *err);
  }
  record_job(s, *job, true);
  if (!job->status().ok()) return reply_error(s, res, error_from_status(job->status()));
  log.finish_reason = finish_reason(job->output().stop_reason, false);
  res.set_content(job->output().result_json, "application/json");
}

}  // namespace pgserve
