// (not yet implemented: see the issue tracker)
#include "command.h"

namespace cli {
void register_bench(CLI::App& app, Runners& runners) {}
}  // namespace cli
