#include "base/cpu.h"

#include <cstdlib>
#include <cstring>

#if defined(__x86_64__) || defined(__i386__)
#include <cpuid.h>
#endif
#if defined(__linux__) && defined(__x86_64__)
#include <sys/syscall.h>
#include <unistd.h>
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

bool amx_enabled() {
  static const bool enabled = [] {
    const char* env = std::getenv("PG_AMX");
    if (env != nullptr && std::strcmp(env, "0") == 0) return false;
#if defined(__linux__) && defined(__x86_64__)
    unsigned eax = 0, ebx = 0, ecx = 0, edx = 0;
    if (__get_cpuid_count(7, 0, &eax, &ebx, &ecx, &edx) == 0) return false;
    constexpr unsigned kAmxBf16 = 1u << 22, kAmxTile = 1u << 24, kAmxInt8 = 1u << 25;
    if ((edx & (kAmxBf16 | kAmxTile | kAmxInt8)) != (kAmxBf16 | kAmxTile | kAmxInt8)) return false;
    constexpr long kReqXcompPerm = 0x1023;  // arch_prctl ARCH_REQ_XCOMP_PERM
    constexpr long kXtileData = 18;         // XFEATURE_XTILEDATA
    return syscall(SYS_arch_prctl, kReqXcompPerm, kXtileData) == 0;
#else
    return false;
#endif
  }();
  return enabled;
}

}  // namespace pg
