#include "base/logging.h"

#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <mutex>

namespace pg {
namespace {

LogLevel level_from_env() {
  const char* env = std::getenv("PG_LOG_LEVEL");
  if (env == nullptr) return LogLevel::kWarning;
  if (std::strcmp(env, "debug") == 0) return LogLevel::kDebug;
  if (std::strcmp(env, "info") == 0) return LogLevel::kInfo;
  if (std::strcmp(env, "error") == 0) return LogLevel::kError;
  if (std::strcmp(env, "silent") == 0) return LogLevel::kSilent;
  return LogLevel::kWarning;
}

LogLevel& level_ref() {
  static LogLevel level = level_from_env();
  return level;
}

}  // namespace

LogLevel log_level() { return level_ref(); }
void set_log_level(LogLevel level) { level_ref() = level; }

void log_message(LogLevel level, const std::string& message) {
  static std::mutex mu;
  static const char* names[] = {"debug", "info", "warning", "error", ""};
  std::lock_guard<std::mutex> lock(mu);
  std::fprintf(stderr, "[%s] %s\n", names[static_cast<int>(level)], message.c_str());
}

}  // namespace pg
