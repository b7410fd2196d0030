// Short probes of this machine's limits, for rooflines measured in the same run as a
// benchmark: peak arithmetic (f32 FMA, bf16 dot products, int8 dot products) from
// register-resident loops on every thread (AVX-512, and AMX tiles where they run), and memory
// bandwidth from a streaming read.
#pragma once

#include <cstdint>

namespace pg::kernels {

struct Roofline {
  double f32_gflops = 0;   // multiply-adds count as 2 FLOPs
  double bf16_gflops = 0;  // 0 when the CPU lacks AVX512-BF16
  double int8_gops = 0;    // 0 when the CPU lacks AVX512-VNNI
  // AMX tile products (tdpbf16ps, tdpbusd), 0 where AMX cannot run (pg::amx_enabled()).
  double amx_bf16_gflops = 0;
  double amx_int8_gops = 0;
  // The peaks of the fastest units the products run on: AMX's where it runs, else AVX-512's.
  double bf16_peak() const { return amx_bf16_gflops > 0 ? amx_bf16_gflops : bf16_gflops; }
  double int8_peak() const { return amx_int8_gops > 0 ? amx_int8_gops : int8_gops; }
  double bandwidth_gbs = 0;  // streaming read, GB/s (1e9 bytes)
};

// Runs each probe for about `seconds_each` on pg::num_threads() threads; bandwidth_bytes
// <= 0 skips the bandwidth probe.
Roofline measure_roofline(double seconds_each = 0.3, int64_t bandwidth_bytes = int64_t{1} << 30);

}  // namespace pg::kernels
