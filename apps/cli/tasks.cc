// (not yet implemented: see the issue tracker)
#include "command.h"

namespace cli {
void register_tasks(CLI::App& app, Runners& runners) {}
}  // namespace cli
