// POST /v1/caption, /v1/ask, /v1/detect, /v1/segment: one image (base64 in JSON, or a
// multipart/form-data upload) and the task's input; the answer is the task's JSON. With
// "stream": true the text comes as events {"text": ...} while it is generated, then
// {"result": {...}} and "data: [DONE]".
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

// Takes the model and a task request; returns the model call that answers it. The result
// JSON holds the task, the prompt sent to the model and the generated text.
Work task_work(std::shared_ptr<const paligemma::Model> model, TaskRequest t) {
  return [model, t = std::move(t)](const paligemma::TextCallback& on_text, JobOutput* out) -> paligemma::Status {
    const std::string prompt = task_prompt(t);
    auto g = model->generate_from_bytes({t.image}, prompt, task_options(t.sampling), on_text);
    if (!g.ok()) return g.status();
    out->text = g->text;
    out->stop_reason = g->stop_reason;
    out->prompt_tokens = g->prompt_tokens;
    out->completion_tokens = static_cast<int64_t>(g->ids.size());
    out->decode_s = g->timings.decode_s;
    json j = {{"task", task_name(t.kind)}, {"prompt", prompt}, {"text", g->text}};
    out->result_json = j.dump(-1, ' ', false, json::error_handler_t::replace);
    return paligemma::Status();
  };
}

// Takes the request; returns the task request from its JSON body or multipart form.
Parsed<TaskRequest> parse_task_request(Server::Impl& s, TaskKind kind, const httplib::Request& req) {
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
    const std::string result = "{\"result\":" + job->output().result_json + "}";
    if (!sink_write(sink, sse_event(result))) return false;
  }
  if (!sink_write(sink, "data: [DONE]\n\n")) return false;
  sink.done();
  return true;
}

}  // namespace

std::string task_prompt(const TaskRequest& t) {
  switch (t.kind) {
    case TaskKind::kCaption: return "caption " + t.language;
    case TaskKind::kAsk: return "answer " + t.language + " " + t.question;
    case TaskKind::kDetect:
    case TaskKind::kSegment: {
      std::string p = t.kind == TaskKind::kDetect ? "detect " : "segment ";
      for (size_t i = 0; i < t.objects.size(); ++i) p += (i ? " ; " : "") + t.objects[i];
      return p;
    }
  }
  return "";
}

void handle_task(Server::Impl& s, TaskKind kind, const httplib::Request& req, httplib::Response& res) {
  RequestLog& log = request_log();
  log.task = task_name(kind);
  const Clock::time_point arrival = log.started ? log.start : Clock::now();
  const Clock::time_point deadline =
      arrival + std::chrono::duration_cast<Clock::duration>(std::chrono::duration<double>(s.opt.timeout_s));
  std::shared_ptr<const paligemma::Model> model = s.model();
  Parsed<TaskRequest> parsed = parse_task_request(s, kind, req);
  if (auto* e = std::get_if<ApiError>(&parsed)) return reply_error(s, res, *e);
  TaskRequest& t = std::get<TaskRequest>(parsed);
  log.stream = t.stream;
  if (auto ids = model->prompt_ids(task_prompt(t), 1); !ids.ok()) {
    ApiError e = error_from_status(ids.status());
    if (e.status == 400) e.code = "prompt_too_long";
    return reply_error(s, res, e);
  }
  const bool stream = t.stream;
  auto job = std::make_shared<GenJob>(task_work(model, std::move(t)), std::vector<std::string>{}, arrival,
                                      deadline);
  if (!submit_job(s, job, res)) return;
  if (stream) {
    res.set_header("Cache-Control", "no-cache");
    res.set_header("X-Accel-Buffering", "no");
    res.set_chunked_content_provider(
        "text/event-stream",
        [&s, job, deadline](size_t, httplib::DataSink& sink) { return stream_task(s, job, deadline, sink); },
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
