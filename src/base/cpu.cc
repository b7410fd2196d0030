#include "base/cpu.h"

#include <cstring>

#if defined(__x86_64__) || defined(__i386__)
#include <cpuid.h>
#endif

namespace pg {

const CpuId& cpu_id() {
  static const CpuId id = [] {
    CpuId c;
#if defined(__x86_64__) || defined(__i386__)
    unsigned eax = 0, ebx = 0, ecx = 0, edx = 0;
    if (__get_cpuid(0, &eax, &ebx, &ecx, &edx) == 0) return c;
    char vendor[13] = {};
    std::memcpy(vendor, &ebx, 4);
    std::memcpy(vendor + 4, &edx, 4);
    std::memcpy(vendor + 8, &ecx, 4);
    c.amd = std::strcmp(vendor, "AuthenticAMD") == 0;
    if (__get_cpuid(1, &eax, &ebx, &ecx, &edx) == 0) return c;
    const int base_family = static_cast<int>((eax >> 8) & 0xf);
    c.family =
        base_family == 0xf ? base_family + static_cast<int>((eax >> 20) & 0xff) : base_family;
#endif
    return c;
  }();
  return id;
}

}  // namespace pg
