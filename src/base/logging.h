// Minimal leveled logging to stderr. PG_LOG_LEVEL=debug|info|warning|error sets the level.
#pragma once

#include <sstream>
#include <string>

namespace pg {

enum class LogLevel { kDebug = 0, kInfo = 1, kWarning = 2, kError = 3, kSilent = 4 };

LogLevel log_level();
void set_log_level(LogLevel level);
void log_message(LogLevel level, const std::string& message);

namespace detail {
class LogLine {
 public:
  explicit LogLine(LogLevel level) : level_(level) {}
  ~LogLine() { log_message(level_, stream_.str()); }
  template <typename T>
  LogLine& operator<<(const T& v) {
    stream_ << v;
    return *this;
  }

 private:
  LogLevel level_;
  std::ostringstream stream_;
};
}  // namespace detail

}  // namespace pg

#define PG_LOG(level)                                 \
  if (::pg::LogLevel::k##level < ::pg::log_level()) { \
  } else                                              \
    ::pg::detail::LogLine(::pg::LogLevel::k##level)
