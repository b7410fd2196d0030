// The server's wire formats: request bodies parsed into plain structs, response bodies built
// from them, and the OpenAI error shape. Pure functions with no I/O and no model, so they
// can be unit-tested and fuzzed (fuzz/request_fuzzer.cc); nothing a client sends makes them
// throw or crash: every problem comes back as an ApiError.
#pragma once

#include <cstdint>
#include <map>
#include <optional>
#include <string>
#include <string_view>
#include <variant>
#include <vector>

namespace pgserve {

// An HTTP error in OpenAI's shape: {"error": {"message", "type", "code", "param"}}.
struct ApiError {
  int status = 400;
  std::string message;
  std::string type = "invalid_request_error";
  std::string code;   // machine-readable: "invalid_json", "image_too_large", ...
  std::string param;  // the request field at fault, or ""
};

// Takes an error; returns its JSON body text.
std::string error_body(const ApiError& e);

// Either a parsed value or the error that stopped the parse.
template <typename T>
using Parsed = std::variant<T, ApiError>;

// What the server accepts; requests beyond these get a 400 naming the limit.
struct Limits {
  size_t max_prompt_chars = 4096;       // text of the prompt (or question/objects) in bytes
  int64_t max_tokens = 512;             // largest max_tokens a request may ask for
  int64_t default_max_tokens = 32;      // when the request names none
  int max_images = 8;                   // images in one request
  int64_t max_image_pixels = 16777216;  // width * height of one image, read from its header
  int max_stop = 4;                     // stop sequences
  size_t max_stop_chars = 64;           // bytes in one stop sequence
  int max_json_depth = 32;              // nesting of the body's arrays and objects
};

// How to pick tokens. Greedy unless the request asks for sampling (temperature > 0, top_p,
// top_k or seed given), like the CLI; temperature 0 is greedy.
struct Sampling {
  int64_t max_tokens = 32;
  bool greedy = true;
  float temperature = 1.0f;
  int top_k = 0;
  float top_p = 1.0f;
  uint64_t seed = 0;
};

// POST /v1/chat/completions, as far as PaliGemma can answer it: the text parts of the user
// messages form the prompt, their image parts (data: URLs) the images, in order.
struct ChatRequest {
  std::string model;
  std::string prompt;
  std::vector<std::string> images;  // encoded bytes (JPEG or PNG), header-checked
  Sampling sampling;
  std::vector<std::string> stop;
  bool stream = false;
  bool include_usage = false;  // stream_options.include_usage
};

// Takes a request body and the limits; returns the request or a 400 naming the bad field.
Parsed<ChatRequest> parse_chat_request(std::string_view body, const Limits& limits);

// The task endpoints: /v1/caption, /v1/ask, /v1/detect, /v1/segment.
enum class TaskKind { kCaption, kAsk, kDetect, kSegment };
// Takes a kind; returns its name ("caption", ...).
const char* task_name(TaskKind kind);

struct TaskRequest {
  TaskKind kind = TaskKind::kCaption;
  std::string image;                 // encoded bytes, header-checked
  std::string language = "en";       // caption / ask
  std::string question;              // ask
  std::vector<std::string> objects;  // detect / segment
  std::string mask_format = "rle";   // segment: masks as run lengths ("rle") or PNG ("png")
  Sampling sampling;
  bool stream = false;
};

// Takes a task kind, a JSON body ({"image": base64 or data: URL, "question" | "objects" |
// "prompt", "language", "mask_format", "max_tokens", "stream", "temperature", "top_p",
// "top_k", "seed"}) and the
// limits; returns the request or an error.
Parsed<TaskRequest> parse_task_json(TaskKind kind, std::string_view body, const Limits& limits);

// The same from a multipart/form-data upload: the form's text fields by name and the bytes
// of its "image" file part (numbers and booleans arrive as text).
Parsed<TaskRequest> parse_task_form(TaskKind kind, const std::map<std::string, std::string>& fields,
                                    const std::string& image, const Limits& limits);

// Checks encoded image bytes against the limits before any decoding; `what` names the image
// in the message ("image 0"). Returns an error, or nullopt when the image may be decoded.
std::optional<ApiError> check_image(std::string_view bytes, const Limits& limits,
                                    const std::string& what);

// --- responses -------------------------------------------------------------------------

struct Completion {
  std::string id;       // "chatcmpl-..."
  int64_t created = 0;  // Unix seconds
  std::string model;
  std::string text;
  std::string finish_reason;  // "stop" or "length"
  int64_t prompt_tokens = 0;
  int64_t completion_tokens = 0;
};

// Takes a finished generation's stop reason ("eos", "max_tokens", "context", "stopped") and
// whether a stop sequence ended it; returns OpenAI's finish_reason.
std::string finish_reason(const std::string& stop_reason, bool stop_sequence);

// Takes a completion; returns the chat.completion JSON body.
std::string completion_body(const Completion& c);

// Takes the completion's identity and one delta; returns a chat.completion.chunk JSON text.
// role and content are left out of the delta when null; finish_reason is null when empty.
std::string chunk_body(const Completion& c, const char* role, const std::string* content,
                       const std::string& finish);

// Takes a completion; returns the final usage chunk (empty choices) for include_usage.
std::string usage_chunk_body(const Completion& c);

// Takes the model id and its creation time; returns the GET /v1/models list body.
std::string models_body(const std::string& model_id, int64_t created);
// The same for one model (GET /v1/models/{id}).
std::string model_body(const std::string& model_id, int64_t created);

// Takes a JSON text; returns it as one server-sent event: "data: TEXT\n\n".
std::string sse_event(std::string_view json);

// --- stop sequences --------------------------------------------------------------------

// Cuts generated text at the first stop sequence, holding back a tail that may be the start
// of one so that streamed text never shows part of a stop sequence.
class StopMatcher {
 public:
  explicit StopMatcher(std::vector<std::string> stops);

  // Takes the next piece of text; returns the text that may be shown now. After a stop
  // sequence appears, returns the text before it and then only "".
  std::string push(std::string_view piece);
  // Returns the text still held back (at the end of generation); "" once stopped.
  std::string finish();
  bool stopped() const { return stopped_; }

 private:
  std::vector<std::string> stops_;
  std::string pending_;
  bool stopped_ = false;
};

}  // namespace pgserve
