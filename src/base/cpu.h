// The CPU the process runs on, as CPUID reports it: for kernels whose best form differs
// between microarchitectures (tuning only; every form computes the same values).
#pragma once

namespace pg {

struct CpuId {
  bool amd = false;  // vendor "AuthenticAMD"
  int family = 0;    // base family plus extended family (AMD Zen 4: 0x19, Zen 5: 0x1a)
};

// Read once, on first use.
const CpuId& cpu_id();

}  // namespace pg
