// Short probes of this machine's limits, for rooflines measured in the same run as a
// benchmark: peak arithmetic (f32 FMA, bf16 dot products, int8 dot products) from
// register-resident loops on every thread, and memory bandwidth from a streaming read.
#pragma once

#include <cstdint>

namespace pg::kernels {

struct Roofline {
  double f32_gflops = 0;     // multiply-adds count as 2 FLOPs
  double bf16_gflops = 0;    // 0 when the CPU lacks AVX512-BF16
  double int8_gops = 0;      // 0 when the CPU lacks AVX512-VNNI
  double bandwidth_gbs = 0;  // streaming read, GB/s (1e9 bytes)
};

// Runs each probe for about `seconds_each` on pg::num_threads() threads; bandwidth_bytes
// <= 0 skips the bandwidth probe.
Roofline measure_roofline(double seconds_each = 0.3, int64_t bandwidth_bytes = int64_t{1} << 30);

}  // namespace pg::kernels
