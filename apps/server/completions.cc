// POST /v1/chat/completions: OpenAI's chat completions, answered in one piece or streamed
// as server-sent events (chat.completion.chunk objects, then "data: [DONE]").
#include <ctime>

#include "server_impl.h"

namespace pgserve {
namespace {

// Takes the parsed request and the model; returns the options generate() takes.
paligemma::GenerateOptions generate_options(const Sampling& s) {
  paligemma::GenerateOptions o;
  o.max_tokens = s.max_tokens;
  o.greedy = s.greedy;
  o.temperature = s.temperature;
  o.top_k = s.top_k;
  o.top_p = s.top_p;
  o.seed = s.seed;
  return o;
}

// Streams one completion: a first chunk with the role, a chunk per piece of text, a last
// chunk with finish_reason (then usage when asked), and "data: [DONE]". An error after the
// headers went out travels as an event holding the error object.
bool stream_completion(Server::Impl& s, const std::shared_ptr<GenJob>& job, const Completion& meta,
                       bool include_usage, Clock::time_point deadline, httplib::DataSink& sink) {
  RequestLog& log = request_log();
  if (!sink_write(sink, sse_event(chunk_body(meta, "assistant", nullptr, "")))) {
    job->cancel("disconnect");
    record_job(s, *job, false);
    return false;
  }
  const PumpEnd end = pump(s, *job, sink, deadline, [&meta](const std::string& text) {
    return sse_event(chunk_body(meta, nullptr, &text, ""));
  });
  record_job(s, *job, end == PumpEnd::kDone);
  if (end == PumpEnd::kDisconnected) return false;
  if (auto err = pump_error(end, *job)) {
    log.error_code = err->code;
    sink_write(sink, sse_event(error_body(*err)));
  } else {
    Completion done = meta;
    const JobOutput& out = job->output();
    done.finish_reason = finish_reason(out.stop_reason, out.stop_sequence);
    done.prompt_tokens = out.prompt_tokens;
    done.completion_tokens = out.completion_tokens;
    log.finish_reason = done.finish_reason;
    if (!sink_write(sink, sse_event(chunk_body(done, nullptr, nullptr, done.finish_reason))))
      return false;
    if (include_usage && !sink_write(sink, sse_event(usage_chunk_body(done)))) return false;
  }
  if (!sink_write(sink, "data: [DONE]\n\n")) return false;
  sink.done();
  return true;
}

}  // namespace

void handle_chat(Server::Impl& s, const httplib::Request& req, httplib::Response& res) {
  RequestLog& log = request_log();
  const Clock::time_point arrival = log.started ? log.start : Clock::now();
  const Clock::time_point deadline = arrival + std::chrono::duration_cast<Clock::duration>(
                                                   std::chrono::duration<double>(s.opt.timeout_s));
  std::shared_ptr<const paligemma::Model> model = s.model();
  Parsed<ChatRequest> parsed = parse_chat_request(req.body, s.opt.limits);
  if (auto* e = std::get_if<ApiError>(&parsed)) return reply_error(s, res, *e);
  ChatRequest& r = std::get<ChatRequest>(parsed);
  log.stream = r.stream;

  // The prompt must leave room in the context: counted in tokens before anything is queued.
  auto ids = model->prompt_ids(r.prompt, static_cast<int64_t>(r.images.size()));
  if (!ids.ok()) {
    ApiError e = error_from_status(ids.status());
    if (e.status == 400) {
      e.code = "prompt_too_long";
      e.param = "messages";
    }
    return reply_error(s, res, e);
  }

  Completion meta;
  meta.id = "chatcmpl-" + log.id.substr(4);
  meta.created = static_cast<int64_t>(std::time(nullptr));
  meta.model = s.opt.model_id;
  meta.prompt_tokens = static_cast<int64_t>(ids->size());

  const paligemma::GenerateOptions options = generate_options(r.sampling);
  Work work = [model, images = std::move(r.images), prompt = std::move(r.prompt), options](
                  const paligemma::TextCallback& on_text, JobOutput* out) -> paligemma::Status {
    auto g = model->generate_from_bytes(images, prompt, options, on_text);
    if (!g.ok()) return g.status();
    out->text = std::move(g->text);
    out->stop_reason = g->stop_reason;
    out->prompt_tokens = g->prompt_tokens;
    out->completion_tokens = static_cast<int64_t>(g->ids.size());
    out->decode_s = g->timings.decode_s;
    return paligemma::Status();
  };
  auto job = std::make_shared<GenJob>(std::move(work), std::move(r.stop), arrival, deadline);
  if (!submit_job(s, job, res)) return;

  if (r.stream) {
    res.set_header("Cache-Control", "no-cache");
    res.set_header("X-Accel-Buffering", "no");
    const bool include_usage = r.include_usage;
    res.set_chunked_content_provider(
        "text/event-stream",
        [&s, job, meta, include_usage, deadline](size_t, httplib::DataSink& sink) {
          return stream_completion(s, job, meta, include_usage, deadline, sink);
        },
        // Runs when the response is destroyed: a stream that never ran or broke off stops.
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
  const JobOutput& out = job->output();
  meta.text = out.text;
  meta.finish_reason = finish_reason(out.stop_reason, out.stop_sequence);
  meta.prompt_tokens = out.prompt_tokens;
  meta.completion_tokens = out.completion_tokens;
  log.finish_reason = meta.finish_reason;
  res.set_content(completion_body(meta), "application/json");
}

}  // namespace pgserve
