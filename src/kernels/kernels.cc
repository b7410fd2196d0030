// Chooses the kernel table model code uses.
#include "kernels/kernels.h"

#include <atomic>
#include <cstdlib>
#include <string_view>

namespace pg::kernels {
namespace {

std::atomic<const KernelTable*> g_active{nullptr};

// fast_kernels() unless PG_KERNELS=reference (read once, on first use).
const KernelTable& default_kernels() {
  static const KernelTable* table = [] {
    const char* env = std::getenv("PG_KERNELS");
    if (env != nullptr && std::string_view(env) == "reference") return &reference_kernels();
    return &fast_kernels();
  }();
  return *table;
}

}  // namespace

const KernelTable& kernels() {
  const KernelTable* table = g_active.load(std::memory_order_acquire);
  return table != nullptr ? *table : default_kernels();
}

// nullptr goes back to the default choice.
void set_active_kernels(const KernelTable* table) {
  g_active.store(table, std::memory_order_release);
}

}  // namespace pg::kernels
