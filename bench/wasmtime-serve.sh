#!/usr/bin/env bash
# Baseline for the provider benchmark: `wasmtime serve -S cli=y -O pooling-allocator`
# (wasmtime-cli 48.0.8) serving examples/hello, loaded with wrk on this machine.
#
#   bench/wasmtime-serve.sh [--install-only] [DURATION_S] [CONNECTIONS]
#
# Installs wasmtime-cli into bench/.tools on first use (`cargo install --locked`, a long
# compile). Prints one line `wasmtime-serve rps=... p50_ms=... p99_ms=...`.
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
tools="$root/bench/.tools"
wasmtime="$tools/bin/wasmtime"
version=48.0.8

if [ ! -x "$wasmtime" ] || ! "$wasmtime" --version | grep -q "$version"; then
  echo "==> installing wasmtime-cli $version into bench/.tools (long compile)" >&2
  cargo install --locked wasmtime-cli --version "$version" --root "$tools"
fi
[ "${1:-}" = "--install-only" ] && exit 0

duration="${1:-10}"
conns="${2:-16}"
command -v wrk >/dev/null || { echo "wrk missing: run scripts/setup" >&2; exit 1; }

(cd "$root/examples/hello" && cargo build --quiet --target wasm32-wasip2 --release)
wasm="$root/examples/hello/target/wasm32-wasip2/release/hello.wasm"

port="${PORT:-18181}"
"$wasmtime" serve -S cli=y -O pooling-allocator --addr "127.0.0.1:$port" "$wasm" \
  >/dev/null 2>&1 &
pid=$!
trap 'kill "$pid" 2>/dev/null || true; wait "$pid" 2>/dev/null || true' EXIT
for _ in $(seq 100); do
  curl -sf "http://127.0.0.1:$port/" >/dev/null 2>&1 && break
  sleep 0.1
done
curl -sf "http://127.0.0.1:$port/" | grep -q "Hello from Khachapuri" \
  || { echo "wasmtime serve did not answer" >&2; exit 1; }

# Warm up, then measure.
wrk -t2 -c"$conns" -d2s "http://127.0.0.1:$port/" >/dev/null
out="$(wrk -t2 -c"$conns" -d"${duration}s" --latency "http://127.0.0.1:$port/")"
echo "$out" >&2
rps="$(awk '/Requests\/sec/ {print $2}' <<<"$out")"
p50="$(awk '$1=="50%" {print $2}' <<<"$out")"
p99="$(awk '$1=="99%" {print $2}' <<<"$out")"
echo "wasmtime-serve rps=$rps p50=$p50 p99=$p99"
