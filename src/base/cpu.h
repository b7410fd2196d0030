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

// Whether this process may run AMX tile instructions with bf16 and int8 products: the CPU
// reports AMX-TILE, AMX-BF16 and AMX-INT8, the kernel granted the tile data state
// (arch_prctl ARCH_REQ_XCOMP_PERM, asked once for the whole process, on first call), and
// PG_AMX=0 is not set in the environment (which keeps the AVX-512 products, for
// comparisons).
bool amx_enabled();

}  // namespace pg
