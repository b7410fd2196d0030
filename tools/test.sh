#!/usr/bin/env bash
# Installs what is missing, builds, and runs the whole test suite: once in Release, once
# in a build for a generic x86-64 (PG_NATIVE=OFF: the paths a CPU without AVX-512 runs),
# then once more under AddressSanitizer + UndefinedBehaviorSanitizer.
set -euo pipefail
cd "$(dirname "$0")/.."
bash tools/install-deps.sh
bash tools/install-test-deps.sh   # chromium and the npm packages of the server's tests
jobs=$(nproc)

cmake -S . -B build -G Ninja -DCMAKE_BUILD_TYPE=Release
cmake --build build -j "$jobs"
ctest --test-dir build --output-on-failure -j "$jobs" 2>&1 | tee build/ctest-summary.log

# A generic x86-64 build: the kernels' portable paths (the plain twins as the fast
# products where AVX-512 is missing, the portable roofline probe). The Node/browser
# client tests run once, in the Release pass.
cmake -S . -B build-generic -G Ninja -DCMAKE_BUILD_TYPE=Release -DPG_NATIVE=OFF
cmake --build build-generic -j "$jobs"
ctest --test-dir build-generic --output-on-failure -j "$jobs" -E '^node_' 2>&1 |
  tee build-generic/ctest-summary.log

cmake -S . -B build-asan -G Ninja -DCMAKE_BUILD_TYPE=RelWithDebInfo -DPG_SANITIZE=ON
cmake --build build-asan -j "$jobs"
# The Node/browser client tests exercise the same server code as server_test; they run
# once, in the Release pass above.
ASAN_OPTIONS=detect_leaks=1 UBSAN_OPTIONS=print_stacktrace=1 \
  ctest --test-dir build-asan --output-on-failure -j "$jobs" -E '^node_' 2>&1 | tee build-asan/ctest-summary.log
# The run ends with the passes' ctest summaries (ctest prints skipped tests after its
# summary line; CI counts the run by that line).
echo "Release pass: $(grep -h 'tests passed' build/ctest-summary.log)"
echo "Generic x86-64 pass: $(grep -h 'tests passed' build-generic/ctest-summary.log)"
echo "ASan+UBSan pass:"
grep -h 'tests passed' build-asan/ctest-summary.log
