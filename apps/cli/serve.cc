// (not yet implemented: see the issue tracker)
#include "command.h"

namespace cli {
void register_serve(CLI::App& app, Runners& runners) {}
}  // namespace cli
