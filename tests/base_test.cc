// src/base: Status/Result, parallel_for, parallel_chunks and parallel_claims, and the line-aligned
// (huge-page) allocator.
#include <gtest/gtest.h>

#include <algorithm>
#include <atomic>
#include <cstdint>
#include <fstream>
#include <string>
#include <utility>
#include <vector>

#include "base/cpu.h"
#include "base/memory.h"
#include "base/parallel.h"
#include "base/status.h"

namespace pg {
namespace {

Result<int> half(int v) {
  if (v % 2 != 0) return invalid_argument("odd value " + std::to_string(v));
  return v / 2;
}

Status quarter(int v, int* out) {
  PG_ASSIGN_OR_RETURN(int h, half(v));
  PG_ASSIGN_OR_RETURN(*out, half(h));
  return Status::Ok();
}

TEST(Status, CarriesCodeMessageAndContext) {
  const Status s = not_found("tensor \"w\" missing").with_context("model.safetensors");
  EXPECT_FALSE(s.ok());
  EXPECT_EQ(s.code(), StatusCode::kNotFound);
  EXPECT_EQ(s.message(), "model.safetensors: tensor \"w\" missing");
  EXPECT_TRUE(Status::Ok().ok());
}

TEST(Status, AssignOrReturnPropagatesTheFirstError) {
  int out = 0;
  EXPECT_TRUE(quarter(12, &out).ok());
  EXPECT_EQ(out, 3);
  const Status s = quarter(6, &out);  // 6 -> 3, odd
  EXPECT_EQ(s.code(), StatusCode::kInvalidArgument);
  EXPECT_EQ(s.message(), "odd value 3");
}

TEST(Parallel, EveryIndexRunsExactlyOnce) {
  for (int threads : {1, 2, 3}) {
    set_num_threads(threads);
    for (int64_t n : {0, 1, 7, 64, 1000, 4097}) {
      for (int64_t grain : {1, 16, 5000}) {
        std::vector<std::atomic<int>> hits(static_cast<size_t>(n));
        parallel_for(n, grain, [&](int64_t b, int64_t e) {
          ASSERT_LE(0, b);
          ASSERT_LE(b, e);
          ASSERT_LE(e, n);
          for (int64_t i = b; i < e; ++i) hits[static_cast<size_t>(i)]++;
        });
        for (int64_t i = 0; i < n; ++i) {
          ASSERT_EQ(hits[static_cast<size_t>(i)].load(), 1)
              << "index " << i << " of " << n << ", grain " << grain << ", threads " << threads;
        }
      }
    }
  }
  set_num_threads(0);
}

// Chunks are near-equal, cover [0, n) once, and number min(chunks, n) when run in threads.
TEST(Parallel, ChunksCoverEveryIndexOnce) {
  for (int threads : {1, 2, 3}) {
    set_num_threads(threads);
    for (int64_t n : {0, 1, 7, 64, 1000, 4097}) {
      for (int64_t chunks : {0, 1, 3, 16, 5000}) {
        std::vector<std::atomic<int>> hits(static_cast<size_t>(n));
        std::atomic<int64_t> calls{0}, smallest{n}, largest{0};
        parallel_chunks(n, chunks, [&](int64_t b, int64_t e) {
          ASSERT_LE(0, b);
          ASSERT_LT(b, e);
          ASSERT_LE(e, n);
          calls++;
          int64_t v = smallest.load();
          while (e - b < v && !smallest.compare_exchange_weak(v, e - b)) {
          }
          v = largest.load();
          while (e - b > v && !largest.compare_exchange_weak(v, e - b)) {
          }
          for (int64_t i = b; i < e; ++i) hits[static_cast<size_t>(i)]++;
        });
        for (int64_t i = 0; i < n; ++i) {
          ASSERT_EQ(hits[static_cast<size_t>(i)].load(), 1)
              << "index " << i << " of " << n << ", chunks " << chunks << ", threads " << threads;
        }
        if (n == 0) continue;
        const int64_t want = threads == 1 ? 1 : std::clamp<int64_t>(chunks, 1, n);
        EXPECT_EQ(calls.load(), want) << "n " << n << ", chunks " << chunks;
        EXPECT_LE(largest.load() - smallest.load(), 1) << "n " << n << ", chunks " << chunks;
      }
    }
  }
  set_num_threads(0);
}

// Claims cover [0, n) once; the first n - tail are even shares (one per thread), the rest
// within [min_chunk, max_chunk] but for one that ends at n; a single thread makes one call.
TEST(Parallel, ClaimsCoverEveryIndexOnce) {
  for (int threads : {1, 2, 3}) {
    set_num_threads(threads);
    for (int64_t n : {0, 1, 7, 64, 1000, 4097}) {
      for (int64_t tail : {int64_t{0}, n / 16, n / 2, n}) {
        for (auto [lo, hi] :
             {std::pair<int64_t, int64_t>{1, 1}, {1, 16}, {5, 60}, {0, 0}, {7, 3}}) {
          std::vector<std::atomic<int>> hits(static_cast<size_t>(n));
          std::atomic<int64_t> calls{0};
          const int64_t lo_eff = std::max<int64_t>(lo, 1), hi_eff = std::max(hi, lo_eff);
          const int64_t bulk = n - tail;
          const int used = static_cast<int>(std::min<int64_t>(threads, (n + lo_eff - 1) / lo_eff));
          const int64_t share = used > 0 ? (bulk + used - 1) / used : 0;
          parallel_claims(n, tail, lo, hi, [&](int64_t b, int64_t e) {
            ASSERT_LE(0, b);
            ASSERT_LT(b, e);
            ASSERT_LE(e, n);
            calls++;
            if (used > 1 && b < bulk) {
              EXPECT_EQ(b % share, 0) << "n " << n << ", claim [" << b << ", " << e << ")";
              EXPECT_EQ(e, std::min(bulk, b + share)) << "n " << n << ", claim [" << b << ")";
            } else if (used > 1) {
              EXPECT_LE(e - b, hi_eff) << "n " << n << ", claim [" << b << ", " << e << ")";
              if (e < n) {
                EXPECT_GE(e - b, lo_eff) << "n " << n << ", claim [" << b << ", " << e << ")";
              }
            }
            for (int64_t i = b; i < e; ++i) hits[static_cast<size_t>(i)]++;
          });
          for (int64_t i = 0; i < n; ++i) {
            ASSERT_EQ(hits[static_cast<size_t>(i)].load(), 1)
                << "index " << i << " of " << n << ", tail " << tail << ", chunks " << lo << "-"
                << hi << ", threads " << threads;
          }
          if (n > 0 && used == 1) {
            EXPECT_EQ(calls.load(), 1);
          }
          // The tail's claims shrink towards its end: at least as many as tail / max_chunk.
          if (used > 1) {
            EXPECT_GE(calls.load(), (tail + hi_eff - 1) / hi_eff);
          }
        }
      }
    }
  }
  set_num_threads(0);
}

// Sizes around the huge-page threshold: every byte writable and kept, 64-byte alignment
// for all, 2 MiB alignment for the mapped ones.
TEST(Memory, AllocateLinesAlignsAndKeepsEveryByte) {
  const size_t sizes[] = {1,
                          63,
                          4096,
                          kHugePageMin - 1,
                          kHugePageMin,
                          kHugePageMin + 1,
                          kHugePageMin + 4096,
                          (size_t{10} << 20) + 123};
  for (size_t bytes : sizes) {
    auto* p = static_cast<uint8_t*>(allocate_lines(bytes));
    ASSERT_NE(p, nullptr);
    const auto addr = reinterpret_cast<uintptr_t>(p);
    EXPECT_EQ(addr % 64, 0u) << bytes;
#if defined(__linux__) && defined(__x86_64__) && !defined(__SANITIZE_ADDRESS__)
    if (bytes >= kHugePageMin) {  // mapped on its own, on a huge-page boundary
      EXPECT_EQ(addr % (size_t{2} << 20), 0u) << bytes;
    }
#endif
    for (size_t i = 0; i < bytes; ++i) p[i] = static_cast<uint8_t>(i * 131 + 7);
    size_t wrong = 0, first = bytes;
    for (size_t i = 0; i < bytes; ++i) {
      if (p[i] != static_cast<uint8_t>(i * 131 + 7)) {
        ++wrong;
        if (first == bytes) first = i;
      }
    }
    EXPECT_EQ(wrong, 0u) << bytes << " bytes, first wrong at " << first;
    free_lines(p, bytes);
  }
  free_lines(nullptr, kHugePageMin);  // a no-op, as for free()
}

TEST(Memory, LineAlignedVectorGrowsAcrossTheThreshold) {
  LineAlignedVector<float> v;
  for (int64_t i = 0; i < (int64_t{3} << 20); ++i) v.push_back(static_cast<float>(i));
  EXPECT_EQ(reinterpret_cast<uintptr_t>(v.data()) % 64, 0u);
  for (int64_t i = 0; i < static_cast<int64_t>(v.size()); i += 4099)
    ASSERT_EQ(v[static_cast<size_t>(i)], static_cast<float>(i)) << i;
  LineAlignedVector<float> copy = v;
  EXPECT_EQ(copy, v);
}

}  // namespace
}  // namespace pg

TEST(Cpu, FamilyAndVendorMatchTheKernelsReport) {
  // /proc/cpuinfo's "vendor_id" and "cpu family" (decimal, extended family included) for
  // the first processor, where Linux has them.
  std::ifstream info("/proc/cpuinfo");
  std::string line, vendor;
  int family = -1;
  while (std::getline(info, line) && (vendor.empty() || family < 0)) {
    const auto colon = line.find(':');
    if (colon == std::string::npos || colon + 2 > line.size()) continue;
    const std::string value = line.substr(colon + 2);
    if (line.rfind("vendor_id", 0) == 0) vendor = value;
    if (line.rfind("cpu family", 0) == 0) family = std::stoi(value);
  }
  if (vendor.empty() || family < 0) GTEST_SKIP() << "no x86 /proc/cpuinfo";
  EXPECT_EQ(pg::cpu_id().amd, vendor == "AuthenticAMD") << vendor;
  EXPECT_EQ(pg::cpu_id().family, family);
}
