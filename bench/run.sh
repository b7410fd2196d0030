#!/usr/bin/env bash
# The speed issue's table: PaliGemma 3B and PaliGemma 2 3B at 224px on random weights,
# every dtype, 2 threads, one JSON line each (build first: cmake --build build).
set -euo pipefail
cd "$(dirname "$0")/.."
out=${1:-bench/results.jsonl}
: >"$out"
for preset in paligemma-3b-224 paligemma2-3b-224; do
  for dtype in bf16 int8 q4; do
    build/paligemma bench --preset "$preset" --random-weights --dtype "$dtype" --threads 2 --json |
      python3 -c 'import json,sys; print(json.dumps(json.load(sys.stdin)))' | tee -a "$out"
  done
done
