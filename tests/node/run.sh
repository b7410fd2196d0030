#!/usr/bin/env bash
# Runs one Node test file against `paligemma serve` (which each test starts on a free port):
#   bash tests/node/run.sh openai|browser PATH/TO/paligemma MODEL_DIR
# Exits 77 (CTest: skipped) with a message when node, the npm packages (`npm ci` in
# tests/node, see tools/install-test-deps.sh) or, for the browser test, /usr/bin/chromium
# are missing.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
name="$1"
export PG_CLI_PATH="$2"
export PG_MODEL_DIR="$3"
skip() { echo "SKIPPED: $*"; exit 77; }
command -v node >/dev/null || skip "node is not installed (apt-get install nodejs)"
[ -d "$here/node_modules/openai" ] && [ -d "$here/node_modules/playwright-core" ] ||
  skip "tests/node/node_modules is missing: run tools/install-test-deps.sh (npm ci in tests/node)"
if [ "$name" = browser ]; then
  [ -x /usr/bin/chromium ] || skip "/usr/bin/chromium is missing: run tools/install-test-deps.sh (apt-get install chromium)"
fi
cd "$here"
exec node --test --test-reporter=spec "$name.test.mjs"
