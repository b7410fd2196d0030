#!/usr/bin/env bash
# Load test of `paligemma serve` on the tiny model, on this machine only (127.0.0.1):
#   bash tools/loadtest.sh [BUILD_DIR] [CLIENTS] [SECONDS] [--no-rss-check]
# Starts the server on a free port (--threads 2 --max-queue 16), runs build/pg_loadtest
# (CLIENTS concurrent clients, default 64, for SECONDS, default 30, after a 5 s warm-up),
# and passes when no request failed except with a well-formed 503, the server is still up
# and exits cleanly on SIGTERM, and its RSS at the end is within 10% of the RSS after the
# warm-up (skip that check under sanitizers, whose allocator keeps freed memory).
set -euo pipefail
cd "$(dirname "$0")/.."
build="${1:-build}"
clients="${2:-64}"
seconds="${3:-30}"
rss_check=1
[ "${4:-}" = "--no-rss-check" ] && rss_check=0
model=testdata/golden/tiny-pg1
log="$(mktemp)"
trap 'rm -f "$log"; [ -n "${pid:-}" ] && kill "$pid" 2>/dev/null || true' EXIT

"$build/paligemma" serve --model "$model" --host 127.0.0.1 --port 0 --threads 2 --compute-threads 1 \
  --max-queue 16 --quiet 2>"$log" &
pid=$!
port=""
for _ in $(seq 1 300); do
  port="$(grep -o '"port":[0-9]*' "$log" | head -1 | cut -d: -f2 || true)"
  [ -n "$port" ] && break
  sleep 0.05
done
[ -n "$port" ] || { echo "loadtest: the server did not start"; cat "$log"; exit 1; }
for _ in $(seq 1 300); do
  grep -q '"msg":"ready"' "$log" && break
  sleep 0.05
done

status=0
result="$("$build/pg_loadtest" --port "$port" --clients "$clients" --duration "$seconds" --warmup 5 \
  --server-pid "$pid" --max-tokens 8)" || status=$?
echo "$result"
if ! kill -0 "$pid" 2>/dev/null; then
  echo "loadtest: FAIL: the server died"; cat "$log"; exit 1
fi
if [ "$rss_check" = 1 ]; then
  growth="$(echo "$result" | sed -n 's/.*"rss_growth": *\(-\?[0-9.e+-]*\).*/\1/p')"
  if [ -z "$growth" ] || awk -v g="$growth" 'BEGIN { exit !(g > 0.10) }'; then
    echo "loadtest: FAIL: RSS grew by ${growth:-?} (more than 10%) after the warm-up"; status=1
  fi
fi
kill -TERM "$pid"
wait "$pid" || { echo "loadtest: FAIL: the server exited with $? on SIGTERM"; status=1; }
pid=""
[ "$status" = 0 ] && echo "loadtest: PASS" || echo "loadtest: FAIL"
exit "$status"
