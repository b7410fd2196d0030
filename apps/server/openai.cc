#include "openai.h"

#include <algorithm>
#include <cerrno>
#include <cmath>
#include <cstdlib>
#include <nlohmann/json.hpp>

#include "media.h"

namespace pgserve {
namespace {

using nlohmann::json;

ApiError bad(std::string message, std::string code, std::string param = "") {
  return ApiError{400, std::move(message), "invalid_request_error", std::move(code),
                  std::move(param)};
}

// Takes JSON text; returns the deepest nesting of arrays and objects (strings skipped).
int json_depth(std::string_view s) {
  int depth = 0, worst = 0;
  bool in_string = false, escaped = false;
  for (char c : s) {
    if (in_string) {
      if (escaped) {
        escaped = false;
      } else if (c == '\\') {
        escaped = true;
      } else if (c == '"') {
        in_string = false;
      }
      continue;
    }
    if (c == '"') {
      in_string = true;
    } else if (c == '[' || c == '{') {
      worst = std::max(worst, ++depth);
    } else if (c == ']' || c == '}') {
      --depth;
    }
  }
  return worst;
}

// Takes a body; returns its JSON object, or the 400 for text that is not a JSON object.
Parsed<json> parse_object(std::string_view body, const Limits& limits) {
  if (json_depth(body) > limits.max_json_depth) {
    return bad("the body nests arrays and objects deeper than " +
                   std::to_string(limits.max_json_depth) + " levels",
               "invalid_json");
  }
  json j = json::parse(body.begin(), body.end(), nullptr, /*allow_exceptions=*/false);
  if (j.is_discarded()) return bad("the body is not valid JSON", "invalid_json");
  if (!j.is_object()) return bad("the body must be a JSON object", "invalid_json");
  return j;
}

// Takes an object and a key; returns the member, or nullptr when absent or null.
const json* member(const json& j, const char* key) {
  auto it = j.find(key);
  if (it == j.end() || it->is_null()) return nullptr;
  return &*it;
}

// Reads an integer member (a float with an integral value counts) into *out.
std::optional<ApiError> get_int(const json& j, const char* key, int64_t lo, int64_t hi,
                                std::optional<int64_t>* out) {
  const json* v = member(j, key);
  if (!v) return std::nullopt;
  int64_t x = 0;
  if (v->is_number_integer()) {
    x = v->is_number_unsigned() && v->get<uint64_t>() > static_cast<uint64_t>(INT64_MAX)
            ? INT64_MAX
            : v->get<int64_t>();
  } else if (v->is_number_float() && std::isfinite(v->get<double>()) &&
             std::floor(v->get<double>()) == v->get<double>() &&
             std::fabs(v->get<double>()) < 9e18) {
    x = static_cast<int64_t>(v->get<double>());
  } else {
    return bad(std::string("'") + key + "' must be an integer", "invalid_type", key);
  }
  if (x < lo || x > hi) {
    return bad(std::string("'") + key + "' must be between " + std::to_string(lo) + " and " +
                   std::to_string(hi) + ", got " + std::to_string(x),
               "out_of_range", key);
  }
  *out = x;
  return std::nullopt;
}

// Reads a number member within [lo, hi] into *out.
std::optional<ApiError> get_number(const json& j, const char* key, double lo, double hi,
                                   std::optional<double>* out) {
  const json* v = member(j, key);
  if (!v) return std::nullopt;
  if (!v->is_number())
    return bad(std::string("'") + key + "' must be a number", "invalid_type", key);
  const double x = v->get<double>();
  if (!(x >= lo && x <= hi)) {
    return bad(std::string("'") + key + "' must be between " + std::to_string(lo) + " and " +
                   std::to_string(hi),
               "out_of_range", key);
  }
  *out = x;
  return std::nullopt;
}

std::optional<ApiError> get_bool(const json& j, const char* key, bool* out) {
  const json* v = member(j, key);
  if (!v) return std::nullopt;
  if (!v->is_boolean())
    return bad(std::string("'") + key + "' must be a boolean", "invalid_type", key);
  *out = v->get<bool>();
  return std::nullopt;
}

std::optional<ApiError> get_string(const json& j, const char* key, std::string* out) {
  const json* v = member(j, key);
  if (!v) return std::nullopt;
  if (!v->is_string())
    return bad(std::string("'") + key + "' must be a string", "invalid_type", key);
  *out = v->get<std::string>();
  return std::nullopt;
}

#define PG_TRY(expr)                      \
  do {                                    \
    if (auto err_ = (expr)) return *err_; \
  } while (0)

// Reads max_tokens (or max_completion_tokens), temperature, top_p, top_k and seed.
std::optional<ApiError> parse_sampling(const json& j, const Limits& limits, Sampling* s) {
  std::optional<int64_t> max_tokens, top_k, seed;
  std::optional<double> temperature, top_p;
  const char* max_key = member(j, "max_completion_tokens") ? "max_completion_tokens" : "max_tokens";
  if (const json* v = member(j, max_key);
      v && v->is_number_integer() && v->get<int64_t>() > limits.max_tokens) {
    return bad(std::string("'") + max_key + "' is " + std::to_string(v->get<int64_t>()) +
                   "; this server generates at most " + std::to_string(limits.max_tokens) +
                   " tokens per request",
               "max_tokens_too_large", max_key);
  }
  PG_TRY(get_int(j, max_key, 1, limits.max_tokens, &max_tokens));
  PG_TRY(get_number(j, "temperature", 0.0, 2.0, &temperature));
  PG_TRY(get_number(j, "top_p", 0.0, 1.0, &top_p));
  if (top_p && *top_p <= 0.0) return bad("'top_p' must be greater than 0", "out_of_range", "top_p");
  PG_TRY(get_int(j, "top_k", 0, 1 << 20, &top_k));
  PG_TRY(get_int(j, "seed", INT64_MIN, INT64_MAX, &seed));
  s->max_tokens = max_tokens.value_or(limits.default_max_tokens);
  const bool sampling = temperature || top_p || top_k || seed;
  s->greedy = !sampling || (temperature && *temperature == 0.0);
  s->temperature = static_cast<float>(temperature.value_or(1.0));
  s->top_p = static_cast<float>(top_p.value_or(1.0));
  s->top_k = static_cast<int>(top_k.value_or(0));
  s->seed = static_cast<uint64_t>(seed.value_or(0));
  return std::nullopt;
}

// Takes an image_url value (a data: URL); decodes and checks it into *out.
std::optional<ApiError> decode_image_url(std::string_view url, const Limits& limits,
                                         const std::string& what, std::string* out) {
  auto d = parse_data_url(url);
  if (!d) {
    return bad(what +
                   ": only base64 data: URLs are accepted (data:image/png;base64,...); the "
                   "server fetches nothing",
               "unsupported_image_url", "messages");
  }
  auto bytes = base64_decode(d->payload);
  if (!bytes) return bad(what + ": the data: URL is not valid base64", "invalid_image", "messages");
  PG_TRY(check_image(*bytes, limits, what));
  *out = std::move(*bytes);
  return std::nullopt;
}

// Appends one message's content (a string or an array of parts) to the request.
std::optional<ApiError> add_content(const json& content, const Limits& limits, ChatRequest* r,
                                    std::vector<std::string>* texts) {
  if (content.is_string()) {
    texts->push_back(content.get<std::string>());
    return std::nullopt;
  }
  if (!content.is_array()) {
    return bad("a message's 'content' must be a string or an array of parts", "invalid_type",
               "messages");
  }
  for (const json& part : content) {
    std::string type;
    if (!part.is_object() || get_string(part, "type", &type) || type.empty()) {
      return bad("each content part must be an object with a 'type'", "invalid_type", "messages");
    }
    if (type == "text") {
      std::string text;
      if (!member(part, "text") || get_string(part, "text", &text)) {
        return bad("a text part needs a string 'text'", "invalid_type", "messages");
      }
      texts->push_back(std::move(text));
    } else if (type == "image_url") {
      const json* iu = member(part, "image_url");
      std::string url;
      if (iu && iu->is_string()) {
        url = iu->get<std::string>();
      } else if (!iu || !iu->is_object() || !member(*iu, "url") || get_string(*iu, "url", &url)) {
        return bad("an image_url part needs 'image_url': {'url': 'data:image/...;base64,...'}",
                   "invalid_type", "messages");
      }
      if (static_cast<int>(r->images.size()) >= limits.max_images) {
        return bad("at most " + std::to_string(limits.max_images) + " images per request",
                   "too_many_images", "messages");
      }
      std::string bytes;
      PG_TRY(decode_image_url(url, limits, "image " + std::to_string(r->images.size()), &bytes));
      r->images.push_back(std::move(bytes));
    } else {
      return bad("content parts of type '" + type + "' are not supported (only text and image_url)",
                 "unsupported_content", "messages");
    }
  }
  return std::nullopt;
}

// Takes text; returns it without leading and trailing ASCII whitespace.
std::string trim(std::string_view s) {
  const char* ws = " \t\r\n";
  const size_t b = s.find_first_not_of(ws);
  if (b == std::string_view::npos) return "";
  return std::string(s.substr(b, s.find_last_not_of(ws) - b + 1));
}

std::optional<ApiError> check_prompt(const std::string& text, const Limits& limits,
                                     const char* param) {
  if (text.size() > limits.max_prompt_chars) {
    return bad("the prompt is " + std::to_string(text.size()) + " bytes; at most " +
                   std::to_string(limits.max_prompt_chars) + " are accepted",
               "prompt_too_long", param);
  }
  return std::nullopt;
}

// The task request from a JSON object; `image` holds uploaded bytes when not in the object.
Parsed<TaskRequest> task_from_object(TaskKind kind, const json& j, const std::string* uploaded,
                                     const Limits& limits) {
  TaskRequest t;
  t.kind = kind;
  PG_TRY(parse_sampling(j, limits, &t.sampling));
  if (!member(j, "max_tokens") && !member(j, "max_completion_tokens")) {
    // The task commands' defaults: answers with boxes and masks are longer.
    const int64_t d = kind == TaskKind::kDetect ? 128 : kind == TaskKind::kSegment ? 256 : 64;
    t.sampling.max_tokens = std::min(d, limits.max_tokens);
  }
  PG_TRY(get_bool(j, "stream", &t.stream));
  if (uploaded && !uploaded->empty()) {
    t.image = *uploaded;
  } else {
    std::string text;
    PG_TRY(get_string(j, "image", &text));
    if (text.empty())
      return bad("'image' is required: base64 bytes or a data: URL", "missing_image", "image");
    if (text.size() >= 5 &&
        (text.compare(0, 5, "data:") == 0 || text.compare(0, 5, "DATA:") == 0)) {
      auto d = parse_data_url(text);
      if (!d) return bad("'image' is not a base64 data: URL", "invalid_image", "image");
      text = std::string(d->payload);
    }
    auto bytes = base64_decode(text);
    if (!bytes) return bad("'image' is not valid base64", "invalid_image", "image");
    t.image = std::move(*bytes);
  }
  if (auto e = check_image(t.image, limits, "image")) {
    e->param = "image";
    return *e;
  }
  PG_TRY(get_string(j, "language", &t.language));
  if (t.language.empty() || t.language.size() > 16 ||
      t.language.find_first_not_of("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ-_") !=
          std::string::npos) {
    return bad("'language' must be a language code such as 'en'", "invalid_language", "language");
  }
  PG_TRY(get_string(j, "mask_format", &t.mask_format));
  if (t.mask_format != "rle" && t.mask_format != "png") {
    return bad("'mask_format' must be 'rle' or 'png'", "invalid_mask_format", "mask_format");
  }
  std::string prompt;
  PG_TRY(get_string(j, "prompt", &prompt));
  if (kind == TaskKind::kAsk) {
    PG_TRY(get_string(j, "question", &t.question));
    if (t.question.empty()) t.question = prompt;
    t.question = trim(t.question);
    if (t.question.empty()) return bad("'question' is required", "missing_question", "question");
    PG_TRY(check_prompt(t.question, limits, "question"));
  } else if (kind == TaskKind::kDetect || kind == TaskKind::kSegment) {
    const json* objects = member(j, "objects");
    std::vector<std::string> raw;
    if (objects && objects->is_array()) {
      for (const json& o : *objects) {
        if (!o.is_string()) return bad("'objects' must hold strings", "invalid_type", "objects");
        raw.push_back(o.get<std::string>());
      }
    } else {
      std::string list = prompt;
      if (objects && !objects->is_string()) {
        return bad("'objects' must be an array of strings or a string 'a ; b'", "invalid_type",
                   "objects");
      }
      if (objects) list = objects->get<std::string>();
      for (size_t start = 0; start <= list.size();) {
        const size_t semi = std::min(list.find(';', start), list.size());
        raw.push_back(list.substr(start, semi - start));
        start = semi + 1;
      }
    }
    size_t total = 0;
    for (const std::string& o : raw) {
      std::string name = trim(o);
      if (name.empty()) continue;
      if (name.find(';') != std::string::npos) {
        return bad("an object name may not contain ';'", "invalid_objects", "objects");
      }
      total += name.size() + 3;
      t.objects.push_back(std::move(name));
    }
    if (t.objects.empty())
      return bad("'objects' is required: what to find", "missing_objects", "objects");
    if (t.objects.size() > 32)
      return bad("at most 32 objects per request", "invalid_objects", "objects");
    if (total > limits.max_prompt_chars) {
      return bad("the objects are " + std::to_string(total) + " bytes; at most " +
                     std::to_string(limits.max_prompt_chars) + " are accepted",
                 "prompt_too_long", "objects");
    }
  }
  return t;
}

}  // namespace

std::string error_body(const ApiError& e) {
  json j = {{"error",
             {{"message", e.message},
              {"type", e.type},
              {"code", e.code.empty() ? json(nullptr) : json(e.code)},
              {"param", e.param.empty() ? json(nullptr) : json(e.param)}}}};
  return j.dump(-1, ' ', false, json::error_handler_t::replace);
}

const char* task_name(TaskKind kind) {
  switch (kind) {
    case TaskKind::kCaption: return "caption";
    case TaskKind::kAsk: return "ask";
    case TaskKind::kDetect: return "detect";
    case TaskKind::kSegment: return "segment";
  }
  return "?";
}

std::optional<ApiError> check_image(std::string_view bytes, const Limits& limits,
                                    const std::string& what) {
  auto h = probe_image(bytes);
  if (!h) return bad(what + " is not a JPEG or PNG image", "invalid_image");
  if (h->width <= 0 || h->height <= 0) {
    return bad(what + " has an empty size (" + std::to_string(h->width) + "x" +
                   std::to_string(h->height) + ")",
               "invalid_image");
  }
  if (h->width > limits.max_image_pixels / h->height) {  // width * height > limit, without overflow
    return bad(what + " is " + std::to_string(h->width) + "x" + std::to_string(h->height) +
                   " pixels; at most " + std::to_string(limits.max_image_pixels) +
                   " pixels are accepted",
               "image_too_large");
  }
  return std::nullopt;
}

Parsed<ChatRequest> parse_chat_request(std::string_view body, const Limits& limits) {
  try {
    Parsed<json> parsed = parse_object(body, limits);
    if (auto* e = std::get_if<ApiError>(&parsed)) return *e;
    const json& j = std::get<json>(parsed);
    ChatRequest r;
    PG_TRY(get_string(j, "model", &r.model));
    const json* messages = member(j, "messages");
    if (!messages || !messages->is_array() || messages->empty()) {
      return bad("'messages' must be a non-empty array", "missing_messages", "messages");
    }
    std::vector<std::string> texts;
    bool has_user = false;
    for (const json& m : *messages) {
      std::string role;
      if (!m.is_object() || get_string(m, "role", &role) || role.empty()) {
        return bad("each message must be an object with a 'role'", "invalid_type", "messages");
      }
      if (role != "user") continue;  // PaliGemma takes one prompt: system text is ignored
      has_user = true;
      const json* content = member(m, "content");
      if (!content) return bad("a user message needs 'content'", "invalid_type", "messages");
      PG_TRY(add_content(*content, limits, &r, &texts));
    }
    if (!has_user) return bad("'messages' holds no user message", "missing_messages", "messages");
    for (size_t i = 0; i < texts.size(); ++i) {
      if (i > 0) r.prompt += ' ';
      r.prompt += texts[i];
    }
    PG_TRY(check_prompt(r.prompt, limits, "messages"));
    if (trim(r.prompt).empty()) return bad("the prompt is empty", "empty_prompt", "messages");

    PG_TRY(parse_sampling(j, limits, &r.sampling));
    std::optional<int64_t> n;
    PG_TRY(get_int(j, "n", 1, 1, &n));
    PG_TRY(get_bool(j, "stream", &r.stream));
    if (const json* so = member(j, "stream_options")) {
      if (!so->is_object())
        return bad("'stream_options' must be an object", "invalid_type", "stream_options");
      PG_TRY(get_bool(*so, "include_usage", &r.include_usage));
    }
    if (const json* stop = member(j, "stop")) {
      if (stop->is_string()) {
        r.stop.push_back(stop->get<std::string>());
      } else if (stop->is_array()) {
        for (const json& s : *stop) {
          if (!s.is_string()) return bad("'stop' must hold strings", "invalid_type", "stop");
          r.stop.push_back(s.get<std::string>());
        }
      } else {
        return bad("'stop' must be a string or an array of strings", "invalid_type", "stop");
      }
      if (static_cast<int>(r.stop.size()) > limits.max_stop) {
        return bad("at most " + std::to_string(limits.max_stop) + " stop sequences",
                   "too_many_stops", "stop");
      }
      for (const std::string& s : r.stop) {
        if (s.empty() || s.size() > limits.max_stop_chars) {
          return bad(
              "each stop sequence must be 1 to " + std::to_string(limits.max_stop_chars) + " bytes",
              "invalid_stop", "stop");
        }
      }
    }
    return r;
  } catch (const std::exception& e) {  // defensive: the checks above should make this unreachable
    return bad(std::string("could not read the request: ") + e.what(), "invalid_request");
  }
}

Parsed<TaskRequest> parse_task_json(TaskKind kind, std::string_view body, const Limits& limits) {
  try {
    Parsed<json> parsed = parse_object(body, limits);
    if (auto* e = std::get_if<ApiError>(&parsed)) return *e;
    return task_from_object(kind, std::get<json>(parsed), nullptr, limits);
  } catch (const std::exception& e) {
    return bad(std::string("could not read the request: ") + e.what(), "invalid_request");
  }
}

Parsed<TaskRequest> parse_task_form(TaskKind kind, const std::map<std::string, std::string>& fields,
                                    const std::string& image, const Limits& limits) {
  try {
    json j = json::object();
    for (const auto& [name, value] : fields) {
      if (name == "max_tokens" || name == "max_completion_tokens" || name == "top_k" ||
          name == "seed") {
        if (value.empty()) continue;
        errno = 0;
        char* end = nullptr;
        const long long x = std::strtoll(value.c_str(), &end, 10);
        if (errno != 0 || end != value.c_str() + value.size()) {
          return bad("'" + name + "' must be an integer", "invalid_type", name);
        }
        j[name] = static_cast<int64_t>(x);
      } else if (name == "temperature" || name == "top_p") {
        if (value.empty()) continue;
        char* end = nullptr;
        const double x = std::strtod(value.c_str(), &end);
        if (end != value.c_str() + value.size() || !std::isfinite(x)) {
          return bad("'" + name + "' must be a number", "invalid_type", name);
        }
        j[name] = x;
      } else if (name == "stream") {
        j[name] = value == "true" || value == "1" || value == "on";
      } else {
        j[name] = value;
      }
    }
    return task_from_object(kind, j, &image, limits);
  } catch (const std::exception& e) {
    return bad(std::string("could not read the form: ") + e.what(), "invalid_request");
  }
}

// --- responses -------------------------------------------------------------------------

std::string finish_reason(const std::string& stop_reason, bool stop_sequence) {
  if (stop_sequence || stop_reason == "eos") return "stop";
  return "length";
}

std::string completion_body(const Completion& c) {
  json j = {{"id", c.id},
            {"object", "chat.completion"},
            {"created", c.created},
            {"model", c.model},
            {"system_fingerprint", nullptr},
            {"choices",
             json::array(
                 {{{"index", 0},
                   {"message", {{"role", "assistant"}, {"content", c.text}, {"refusal", nullptr}}},
                   {"logprobs", nullptr},
                   {"finish_reason", c.finish_reason}}})},
            {"usage",
             {{"prompt_tokens", c.prompt_tokens},
              {"completion_tokens", c.completion_tokens},
              {"total_tokens", c.prompt_tokens + c.completion_tokens}}}};
  return j.dump(-1, ' ', false, json::error_handler_t::replace);
}

std::string chunk_body(const Completion& c, const char* role, const std::string* content,
                       const std::string& finish) {
  json delta = json::object();
  if (role) delta["role"] = role;
  if (content) delta["content"] = *content;
  json j = {{"id", c.id},
            {"object", "chat.completion.chunk"},
            {"created", c.created},
            {"model", c.model},
            {"system_fingerprint", nullptr},
            {"choices",
             json::array({{{"index", 0},
                           {"delta", delta},
                           {"logprobs", nullptr},
                           {"finish_reason", finish.empty() ? json(nullptr) : json(finish)}}})}};
  return j.dump(-1, ' ', false, json::error_handler_t::replace);
}

std::string usage_chunk_body(const Completion& c) {
  json j = {{"id", c.id},
            {"object", "chat.completion.chunk"},
            {"created", c.created},
            {"model", c.model},
            {"choices", json::array()},
            {"usage",
             {{"prompt_tokens", c.prompt_tokens},
              {"completion_tokens", c.completion_tokens},
              {"total_tokens", c.prompt_tokens + c.completion_tokens}}}};
  return j.dump(-1, ' ', false, json::error_handler_t::replace);
}

std::string model_body(const std::string& model_id, int64_t created) {
  json j = {
      {"id", model_id}, {"object", "model"}, {"created", created}, {"owned_by", "paligemma.cpp"}};
  return j.dump(-1, ' ', false, json::error_handler_t::replace);
}

std::string models_body(const std::string& model_id, int64_t created) {
  json j = {{"object", "list"},
            {"data", json::array({json::parse(model_body(model_id, created))})}};
  return j.dump(-1, ' ', false, json::error_handler_t::replace);
}

std::string sse_event(std::string_view json_text) {
  std::string s = "data: ";
  s += json_text;
  s += "\n\n";
  return s;
}

// --- stop sequences --------------------------------------------------------------------

StopMatcher::StopMatcher(std::vector<std::string> stops) : stops_(std::move(stops)) {}

std::string StopMatcher::push(std::string_view piece) {
  if (stopped_) return "";
  if (stops_.empty()) return std::string(piece);
  pending_ += piece;
  // The earliest stop sequence wins.
  size_t cut = std::string::npos;
  for (const std::string& s : stops_) cut = std::min(cut, pending_.find(s));
  if (cut != std::string::npos) {
    stopped_ = true;
    std::string out = pending_.substr(0, cut);
    pending_.clear();
    return out;
  }
  // Hold back the longest tail that is a proper prefix of some stop sequence.
  size_t hold = 0;
  for (const std::string& s : stops_) {
    for (size_t k = std::min(s.size() - 1, pending_.size()); k > hold; --k) {
      if (pending_.compare(pending_.size() - k, k, s, 0, k) == 0) {
        hold = k;
        break;
      }
    }
  }
  std::string out = pending_.substr(0, pending_.size() - hold);
  pending_.erase(0, pending_.size() - hold);
  return out;
}

std::string StopMatcher::finish() {
  if (stopped_) return "";
  std::string out = std::move(pending_);
  pending_.clear();
  return out;
}

}  // namespace pgserve
