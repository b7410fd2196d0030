// libFuzzer target for everything the server reads from a client before the model: chat
// completion bodies, task bodies and forms, data: URLs, base64, image headers, and stop
// sequences over streamed text. Each input goes through all of them; the invariants below
// must hold, and nothing may crash, hang or leak (run under ASan + UBSan).
#include <cstdint>
#include <cstdlib>
#include <map>
#include <string>
#include <string_view>

#include "media.h"
#include "openai.h"

namespace {

void check(bool ok) {
  if (!ok) std::abort();
}

void exercise_chat(std::string_view body, const pgserve::Limits& limits) {
  auto parsed = pgserve::parse_chat_request(body, limits);
  if (auto* e = std::get_if<pgserve::ApiError>(&parsed)) {
    check(e->status == 400 && !e->message.empty());
    check(!pgserve::error_body(*e).empty());
    return;
  }
  const auto& r = std::get<pgserve::ChatRequest>(parsed);
  check(r.prompt.size() <= limits.max_prompt_chars);
  check(static_cast<int>(r.images.size()) <= limits.max_images);
  check(r.sampling.max_tokens >= 1 && r.sampling.max_tokens <= limits.max_tokens);
  for (const std::string& img : r.images) {
    auto h = pgserve::probe_image(img);
    check(h && h->width > 0 && h->height > 0 && h->width <= limits.max_image_pixels / h->height);
  }
  // The response builders take the prompt as if it were generated text (any bytes).
  pgserve::Completion c{"chatcmpl-x", 1, r.model, r.prompt, "stop", 1, 1};
  check(!pgserve::completion_body(c).empty());
  check(!pgserve::chunk_body(c, "assistant", &r.prompt, "").empty());
  // Stop sequences over the prompt split into pieces: the shown text is a prefix of it.
  pgserve::StopMatcher m(r.stop);
  std::string shown;
  for (size_t i = 0; i < r.prompt.size(); i += 3)
    shown += m.push(std::string_view(r.prompt).substr(i, 3));
  shown += m.finish();
  check(r.prompt.compare(0, shown.size(), shown) == 0);
  if (!m.stopped()) check(shown == r.prompt);
}

void exercise_task(std::string_view body, int selector, const pgserve::Limits& limits) {
  const auto kind = static_cast<pgserve::TaskKind>(selector % 4);
  auto parsed = pgserve::parse_task_json(kind, body, limits);
  if (auto* t = std::get_if<pgserve::TaskRequest>(&parsed)) {
    check(!t->image.empty());
    if (kind == pgserve::TaskKind::kDetect || kind == pgserve::TaskKind::kSegment)
      check(!t->objects.empty());
  }
  // The same bytes as form fields: split "name=value&..." pairs.
  std::map<std::string, std::string> fields;
  size_t start = 0;
  while (start < body.size() && fields.size() < 16) {
    size_t amp = body.find('&', start);
    if (amp == std::string_view::npos) amp = body.size();
    std::string_view pair = body.substr(start, amp - start);
    const size_t eq = pair.find('=');
    fields[std::string(pair.substr(0, eq))] =
        eq == std::string_view::npos ? "" : std::string(pair.substr(eq + 1));
    start = amp + 1;
  }
  std::string image = fields.count("bytes") ? fields["bytes"] : "";
  (void)pgserve::parse_task_form(kind, fields, image, limits);
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  std::string_view in(reinterpret_cast<const char*>(data), size);
  pgserve::Limits limits;
  limits.max_image_pixels = 1 << 20;
  exercise_chat(in, limits);
  exercise_task(in, size > 0 ? data[0] : 0, limits);

  if (auto bytes = pgserve::base64_decode(in)) {
    check(bytes->size() <= in.size());
    auto again = pgserve::base64_decode(pgserve::base64_encode(*bytes));
    check(again && *again == *bytes);
  }
  if (auto url = pgserve::parse_data_url(in)) (void)pgserve::base64_decode(url->payload);
  if (auto h = pgserve::probe_image(in)) check(h->format == "png" || h->format == "jpeg");
  (void)pgserve::check_image(in, limits, "image");
  return 0;
}
