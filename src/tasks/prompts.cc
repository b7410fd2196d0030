#include "tasks/prompts.h"

namespace pg::tasks {
namespace {

bool is_space(char c) {
  return c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == '\f' || c == '\v';
}

Status check_lang(std::string_view lang) {
  if (lang.empty() || lang.size() > 16) {
    return invalid_argument("language code '" + std::string(lang) +
                            "' must be 1 to 16 characters (e.g. en)");
  }
  for (char c : lang) {
    const bool ok = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
                    c == '-' || c == '_';
    if (!ok) {
      return invalid_argument("language code '" + std::string(lang) +
                              "' may hold only letters, digits, '-' and '_' (e.g. en, pt-BR)");
    }
  }
  return Status::Ok();
}

Status check_object(std::string_view item) {
  if (item.empty())
    return invalid_argument("an object name is empty (objects are separated by ';')");
  for (char c : item) {
    if (c == '<' || c == '>') {
      return invalid_argument("object name '" + std::string(item) +
                              "' must not contain '<' or '>'");
    }
    if (c == '\n' || c == '\r') {
      return invalid_argument("object name '" + std::string(item) + "' must be on one line");
    }
    if (c == ';')
      return invalid_argument("object name '" + std::string(item) + "' must not contain ';'");
  }
  return Status::Ok();
}

// "VERB a ; b" from checked objects.
Result<std::string> object_prompt(const char* verb, const std::vector<std::string>& objects) {
  if (objects.empty()) return invalid_argument(std::string(verb) + ": no objects given");
  std::string out = verb;
  for (size_t i = 0; i < objects.size(); ++i) {
    const std::string_view item = trim(objects[i]);
    PG_RETURN_IF_ERROR(check_object(item));
    out += i == 0 ? " " : std::string(kObjectSeparator);
    out += item;
  }
  return out;
}

}  // namespace

std::string_view trim(std::string_view s) {
  while (!s.empty() && is_space(s.front())) s.remove_prefix(1);
  while (!s.empty() && is_space(s.back())) s.remove_suffix(1);
  return s;
}

Result<std::vector<std::string>> split_objects(std::string_view list) {
  if (trim(list).empty()) return invalid_argument("the object list is empty (e.g. \"cat ; dog\")");
  std::vector<std::string> out;
  size_t start = 0;
  while (true) {
    const size_t end = list.find(';', start);
    const std::string_view item =
        trim(list.substr(start, end == std::string_view::npos ? end : end - start));
    PG_RETURN_IF_ERROR(check_object(item));
    out.emplace_back(item);
    if (end == std::string_view::npos) break;
    start = end + 1;
  }
  return out;
}

Result<std::string> caption_prompt(std::string_view lang, bool long_caption) {
  PG_RETURN_IF_ERROR(check_lang(lang));
  return std::string(long_caption ? "describe " : "caption ") + std::string(lang);
}

Result<std::string> ask_prompt(std::string_view lang, std::string_view question) {
  PG_RETURN_IF_ERROR(check_lang(lang));
  const std::string_view q = trim(question);
  if (q.empty()) return invalid_argument("the question is empty");
  if (q.find('\n') != std::string_view::npos || q.find('\r') != std::string_view::npos) {
    return invalid_argument("the question must be one line (a line break ends the prompt)");
  }
  return "answer " + std::string(lang) + " " + std::string(q);
}

std::string ocr_prompt() { return "ocr"; }

Result<std::string> detect_prompt(const std::vector<std::string>& objects) {
  return object_prompt("detect", objects);
}

Result<std::string> segment_prompt(const std::vector<std::string>& objects) {
  return object_prompt("segment", objects);
}

}  // namespace pg::tasks
