#!/usr/bin/env bash
# Paid-calls benchmark (issue 5), all figures from one run on one machine:
#  1. throughput of paid calls carrying one prepaid voucher (the provider skips the
#     signature and the chain, and only books the cost in its ledger) against free calls of
#     the same function on a `--free` provider (goal: ratio >= 0.9);
#  2. calls/s when every call carries a freshly signed voucher (signature check + fsync of
#     the ledger per call);
#  3. on-chain gas to settle 1000 paid calls: one transaction per call (the seeds' model)
#     against vouchers redeemed in one `redeemBatch`.
#
#   bench/paid-calls.sh            # results in bench/results/paid-calls.md
#   DURATION=10s CONNS=16 CALLS=1000 bench/paid-calls.sh
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup
. scripts/env.sh

duration="${DURATION:-10s}"
conns="${CONNS:-16}"
threads="${THREADS:-2}"
calls="${CALLS:-1000}"
out="bench/results/paid-calls.md"
mkdir -p bench/results

echo "==> building khachapuri, khachapuri-bench and examples/hello (release)" >&2
cargo build --release --locked -p khachapuri -p khachapuri-bench
(cd examples/hello && cargo build --release --target wasm32-wasip2 --quiet)
kh="$PWD/target/release/khachapuri"
kb="$PWD/target/release/khachapuri-bench"
wasm="$PWD/examples/hello/target/wasm32-wasip2/release/hello.wasm"

. bench/lib.sh
json() { python3 -c "import json,sys; print(json.load(sys.stdin)$1)"; }

export KHACHAPURI_HOME="$(mktemp -d)"
# A paid dev network (the dev provider charges; the dev wallet has a funded channel to it).
"$kh" -q dev --json --store-listen 127.0.0.1:0 --provider-listen 127.0.0.1:0 --gateway-listen 127.0.0.1:0 --chain-port 0 \
  >"$KHACHAPURI_HOME/dev.out" 2>"$KHACHAPURI_HOME/dev.log" &
dpid=$!; pids+=("$dpid")
for _ in $(seq 1 600); do [ -s "$KHACHAPURI_HOME/dev.out" ] && break; sleep 0.1; done
info=$(head -1 "$KHACHAPURI_HOME/dev.out")
purl=$(echo "$info" | json '["provider_url"]')
surl=$(echo "$info" | json '["store_url"]')
chain_id=$(echo "$info" | json '["chain_id"]')
escrow=$(echo "$info" | json '["escrow"]')
wait_http "$purl/healthz"
operator=$(curl -fsS "$purl/.well-known/khachapuri" | json '["address"]')

# A free provider on the same store, for the baseline.
fport=$(free_port)
"$kh" -q provider run --free --listen "127.0.0.1:$fport" --gateway "$surl" \
  >/dev/null 2>"$KHACHAPURI_HOME/free.log" &
fpid=$!; pids+=("$fpid")
furl="http://127.0.0.1:$fport"
wait_http "$furl/healthz"

# One public deployment both providers run.
cid=$("$kh" -q deploy "$wasm" --public)

# Anvil's well-known dev account 0 (the dev wallet): a public test key, passed by env.
export KHACHAPURI_BENCH_KEY=0xac0974bec39a17e36ba4a6b4d238ff944bacb478cbed5efcae784d7bf4f2ff80
# Enough credit for every prepaid run (each call reserves its worst case, 0.0437 USDC, and
# is charged ~0.0001): top the dev channel up by 500 USDC.
"$kh" -q escrow deposit 500 >/dev/null
"$kh" -q escrow fund dev 500 >/dev/null
prepaid=$("$kb" header --chain-id "$chain_id" --escrow "$escrow" --provider "$operator" --amount 400 | json '["header"]')
code=$(curl -s -o /dev/null -w '%{http_code}' "$purl/$cid/")
[ "$code" = 402 ] || { echo "expected 402 without payment, got $code" >&2; exit 1; }
curl -fsS -o /dev/null -H "Khachapuri-Payment: $prepaid" "$purl/$cid/"
curl -fsS -o /dev/null "$furl/$cid/"

# Warm up both, then alternate free/paid three times and keep the better run of each.
run_wrk "$furl/$cid/" >/dev/null
run_wrk -H "Khachapuri-Payment: $prepaid" "$purl/$cid/" >/dev/null
best() { python3 -c "import sys; rows=[l.split() for l in sys.stdin if l.strip()]; print(' '.join(max(rows,key=lambda r: float(r[0]))))"; }
results_free=""; results_paid=""
for _ in 1 2 3; do
  results_free+="$(run_wrk "$furl/$cid/")"$'\n'
  results_paid+="$(run_wrk -H "Khachapuri-Payment: $prepaid" "$purl/$cid/")"$'\n'
done
read -r f_rps f_p50 f_p99 < <(echo "$results_free" | best)
read -r p_rps p_p50 p_p99 < <(echo "$results_paid" | best)
ratio=$(python3 -c "print(f'{$p_rps/$f_rps:.2f}')")

# Every call with a fresh signature, starting above the prepaid voucher.
fresh=$("$kb" fresh --chain-id "$chain_id" --escrow "$escrow" --provider "$operator" \
  --url "$purl/$cid/" --from 400 --concurrency "$conns" --duration "${duration%s}")
fresh_rps=$(echo "$fresh" | json '["calls_per_sec"]')
fresh_failed=$(echo "$fresh" | json '["failed"]')
[ "$fresh_failed" = 0 ] || { echo "fresh-voucher calls failed: $fresh" >&2; exit 1; }
fresh_ratio=$(python3 -c "print(f'{$fresh_rps/$f_rps:.2f}')")
status=$("$kh" provider status --json 2>/dev/null || echo '{}')

gas=$("$kb" gas --calls "$calls")
g() { echo "$gas" | json "[\"$1\"]"; }

{
  echo "# Paid-calls benchmark"
  echo
  echo "$(date -u +%F) on $(nproc) cores; wrk -t$threads -c$conns -d$duration (best of 3, alternating); component: examples/hello (public spec)"
  echo
  echo "| calls | req/s | p50 ms | p99 ms |"
  echo "|---|---|---|---|"
  echo "| free provider (\`provider run --free\`) | $f_rps | $f_p50 | $f_p99 |"
  echo "| paid, one prepaid voucher (\`dev\`) | $p_rps | $p_p50 | $p_p99 |"
  echo "| paid, a fresh signature per call | $(printf %.0f "$fresh_rps") | $(echo "$fresh" | json '["p50_ms"]') | $(echo "$fresh" | json '["p99_ms"]') |"
  echo
  echo "Paid (prepaid) / free throughput: **$ratio** (goal >= 0.9). Fresh signature per call / free: **$fresh_ratio**."
  echo
  echo "Settling $calls paid calls on chain (anvil, real contracts):"
  echo
  echo "| strategy | transactions | gas |"
  echo "|---|---|---|"
  echo "| one transaction per call (seeds' \`consume\` model; here \`redeem\` per call) | $calls | $(g per_call_gas_total) |"
  echo "| one \`redeemBatch\`, $(g batched_payers) payers' cumulative vouchers | 1 | $(g batched_gas_total) |"
  echo "| one \`redeemBatch\`, one payer's voucher | 1 | $(g single_voucher_gas_total) |"
  echo
  echo "Gas saved: **$(printf %.0f "$(g ratio_batched_vs_per_call)")x** with $(g batched_payers) payers, **$(printf %.0f "$(g ratio_single_vs_per_call)")x** with one payer."
  echo
  echo "Provider ledger after the run: \`$status\`"
} | tee "$out"
