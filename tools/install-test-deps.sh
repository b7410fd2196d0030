#!/usr/bin/env bash
# Installs what the server's browser and Node tests need, beyond tools/install-deps.sh:
# Debian's chromium (driven headless by playwright-core, never a downloaded browser), and
# the npm packages pinned in tests/node/package-lock.json (openai, playwright-core, pngjs).
# node and npm come with the machine (Debian's nodejs + npm otherwise).
set -euo pipefail
cd "$(dirname "$0")/.."
PACKAGES=(chromium)
command -v node >/dev/null || PACKAGES+=(nodejs)
command -v npm >/dev/null || PACKAGES+=(npm)
missing=()
for p in "${PACKAGES[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
  SUDO=""
  if [ "$(id -u)" -ne 0 ]; then SUDO="sudo"; fi
  echo "install-test-deps: installing ${missing[*]}"
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq "${missing[@]}"
fi
# Exactly the locked versions; playwright-core downloads no browser.
(cd tests/node && npm ci --no-audit --no-fund)
