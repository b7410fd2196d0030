#include "model/trace.h"

#include <cstdlib>
#include <mutex>

#include "base/logging.h"
#include "io/npy.h"

namespace pg::model {
namespace {

std::string& dump_dir() {
  static std::string dir = [] {
    const char* env = std::getenv("PG_DUMP_DIR");
    return std::string(env == nullptr ? "" : env);
  }();
  return dir;
}

}  // namespace

void set_dump_dir(const std::string& dir) { dump_dir() = dir; }
bool tracing() { return !dump_dir().empty(); }

void trace(const std::string& name, const float* data, const Shape& shape) {
  if (!tracing()) return;
  const Status st = io::write_npy(dump_dir() + "/" + name + ".npy", data, shape);
  if (!st.ok()) {
    PG_LOG(Warning) << "trace " << name << ": " << st.message();
  }
}

}  // namespace pg::model
