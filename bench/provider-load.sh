#!/usr/bin/env bash
# Load benchmark (issue 3): the provider serving examples/hello against
# `wasmtime serve -S cli=y -O pooling-allocator` (wasmtime-cli 48.0.8) serving the same
# component, measured in one run with wrk. Also: first call after deploy (compile),
# first call after a provider restart (disk cache), steady-state RSS.
#
#   bench/provider-load.sh            # results in bench/results/provider-load.md
#   WASMTIME=/path/to/wasmtime DURATION=10s CONNS=16 bench/provider-load.sh
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup
. scripts/env.sh

duration="${DURATION:-10s}"
conns="${CONNS:-16}"
threads="${THREADS:-2}"
out="bench/results/provider-load.md"
mkdir -p bench/results

wasmtime="${WASMTIME:-}"
if [ -z "$wasmtime" ]; then
  wasmtime="bench/.tools/bin/wasmtime"
  if [ ! -x "$wasmtime" ]; then
    echo "==> installing wasmtime-cli 48.0.8 into bench/.tools (one-time, long compile)" >&2
    cargo install --locked wasmtime-cli --version 48.0.8 --root bench/.tools
  fi
fi
"$wasmtime" --version >&2

echo "==> building khachapuri and examples/hello (release)" >&2
cargo build --release --locked -p khachapuri
(cd examples/hello && cargo build --release --target wasm32-wasip2 --quiet)
kh="$PWD/target/release/khachapuri"
wasm="$PWD/examples/hello/target/wasm32-wasip2/release/hello.wasm"

. bench/lib.sh
rss_kb() { awk '/VmRSS/ {print $2}' "/proc/$1/status"; }

# --- wasmtime serve ---
wport=$(free_port)
"$wasmtime" serve -S cli=y -O pooling-allocator --addr "127.0.0.1:$wport" "$wasm" 2>/dev/null &
wpid=$!; pids+=("$wpid")
wait_http "http://127.0.0.1:$wport/"
run_wrk "http://127.0.0.1:$wport/" >/dev/null   # warm-up
read -r w_rps w_p50 w_p99 < <(run_wrk "http://127.0.0.1:$wport/")
w_rss=$(rss_kb "$wpid")
kill -TERM "$wpid"; wait "$wpid" 2>/dev/null || true

# --- khachapuri provider ---
export KHACHAPURI_HOME="$(mktemp -d)"
"$kh" -q dev --free --store-listen 127.0.0.1:0 --provider-listen 127.0.0.1:0 --gateway-listen 127.0.0.1:0 >"$KHACHAPURI_HOME/dev.out" 2>"$KHACHAPURI_HOME/dev.log" &
dpid=$!; pids+=("$dpid")
for _ in $(seq 1 300); do grep -q provider "$KHACHAPURI_HOME/dev.out" 2>/dev/null && break; sleep 0.1; done
purl=$("$kh" info --json | python3 -c 'import json,sys; print(json.load(sys.stdin)["providers"][0]["url"])')
surl=$("$kh" info --json | python3 -c 'import json,sys; print(json.load(sys.stdin)["store_url"])')
cid=$("$kh" -q deploy "$wasm" --public)
first=$(curl -fsS -o /dev/null -w '%{time_total}' "$purl/$cid/")
run_wrk "$purl/$cid/" >/dev/null   # warm-up
read -r k_rps k_p50 k_p99 < <(run_wrk "$purl/$cid/")
k_rss=$(rss_kb "$dpid")

# Restart: a standalone provider over the same data dir reads compiled code from disk.
kill -TERM "$dpid"; wait "$dpid" 2>/dev/null || true
pport=$(free_port)
# The store must stay up for the spec fetch: restart dev with the same home.
"$kh" -q dev --free --store-listen 127.0.0.1:0 --provider-listen "127.0.0.1:$pport" --gateway-listen 127.0.0.1:0 >"$KHACHAPURI_HOME/dev2.out" 2>>"$KHACHAPURI_HOME/dev.log" &
dpid=$!; pids+=("$dpid")
wait_http "http://127.0.0.1:$pport/healthz"
restart=$(curl -fsS -o /dev/null -w '%{time_total}' "http://127.0.0.1:$pport/$cid/")

ratio=$(python3 -c "print(f'{$k_rps/$w_rps:.2f}')")
{
  echo "# Provider load benchmark"
  echo
  echo "$(date -u +%F) on $(nproc) cores; wrk -t$threads -c$conns -d$duration; component: examples/hello"
  echo
  echo "| server | req/s | p50 ms | p99 ms | RSS MiB |"
  echo "|---|---|---|---|---|"
  echo "| wasmtime serve -S cli=y -O pooling-allocator (48.0.8) | $w_rps | $w_p50 | $w_p99 | $((w_rss/1024)) |"
  echo "| khachapuri provider (dev --free) | $k_rps | $k_p50 | $k_p99 | $((k_rss/1024)) |"
  echo
  echo "Throughput ratio provider / wasmtime serve: **$ratio**"
  echo
  echo "- first call after deploy (fetch + compile): ${first}s"
  echo "- first call after a provider restart (compiled code from the disk cache): ${restart}s"
  echo "- provider RSS includes the embedded store of \`khachapuri dev\`"
} | tee "$out"
