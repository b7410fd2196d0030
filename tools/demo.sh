#!/usr/bin/env bash
# Installs what is missing, builds, and runs the main job on the tiny model in testdata/.
set -euo pipefail
cd "$(dirname "$0")/.."
bash tools/install-deps.sh
cmake -S . -B build -G Ninja -DCMAKE_BUILD_TYPE=Release
cmake --build build
model=testdata/golden/tiny-pg2
echo "== build/paligemma generate --model $model --image $model/image.png --prompt \"caption en\""
build/paligemma generate --model "$model" --image "$model/image.png" --prompt "caption en" --max-tokens 12
echo "== the same with --json"
build/paligemma generate --model "$model" --image "$model/image.png" --prompt "caption en" --max-tokens 12 --json
