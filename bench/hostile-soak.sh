#!/usr/bin/env bash
# Hostile-load soak benchmark (issue 11, part 8). On a paid `khachapuri dev` network:
#  1. honest paid load alone: wrk with one prepaid voucher for SOAK_SECONDS;
#  2. the same honest load for SOAK_SECONDS while a second process
#     (`khachapuri-bench hostile run`) throws walk bombs, slowloris connections, slow
#     bodies, oversize bodies, fresh random-key vouchers, unpaid calls of fresh
#     deployments and upload attempts at the same provider, each at a bounded rate.
# Reports honest throughput mixed / alone (goal >= 0.8), the node's RSS and open file
# descriptors every SAMPLE_SECONDS in both phases (should stay flat), answers by status
# per hostile kind, the node's artifact-fetch and compile counters before/after (unpaid
# calls must not move them), and whether the node survived (crashes = 0).
#
#   bench/hostile-soak.sh                     # 2 x 5 minutes; bench/results/hostile-soak.md
#   SOAK_SECONDS=20 bench/hostile-soak.sh     # a quick check
#   CONNS=16 THREADS=2 WALK_RATE=20 SLOWLORIS_CONNS=200 ... bench/hostile-soak.sh
# The dev provider runs with `provider run`'s per-client limit on signature checks
# (SIGNATURE_LIMIT=20 a second; `dev` alone would leave it off).
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup
. scripts/env.sh

soak="${SOAK_SECONDS:-300}"
conns="${CONNS:-16}"
threads="${THREADS:-2}"
sample_every="${SAMPLE_SECONDS:-5}"
specs="${SPECS:-}"
# Hostile rates (requests or new connections per second; connections held).
walk_rate="${WALK_RATE:-20}"
slowloris_conns="${SLOWLORIS_CONNS:-200}"
slow_body_conns="${SLOW_BODY_CONNS:-16}"
trickle="${TRICKLE_SECONDS:-1}"
oversize_rate="${OVERSIZE_RATE:-4}"
fresh_key_rate="${FRESH_KEY_RATE:-20}"
unpaid_rate="${UNPAID_RATE:-20}"
upload_rate="${UPLOAD_RATE:-20}"
# One fresh spec per unpaid call of the mixed phase (capped: publishing takes time).
[ -n "$specs" ] || specs=$(python3 -c "print(min(10000, max(100, int($unpaid_rate*($soak+5)))))")
out="bench/results/hostile-soak.md"
mkdir -p bench/results

echo "==> building khachapuri, khachapuri-bench and examples/hello (release)" >&2
cargo build --release --locked -p khachapuri -p khachapuri-bench
(cd examples/hello && cargo build --release --target wasm32-wasip2 --quiet)
# CARGO_TARGET_DIR, when set, holds the host binaries and the guest's build alike.
target="${CARGO_TARGET_DIR:-$PWD/target}"
kh="$target/release/khachapuri"
kb="$target/release/khachapuri-bench"
wasm="${CARGO_TARGET_DIR:-$PWD/examples/hello/target}/wasm32-wasip2/release/hello.wasm"

. bench/lib.sh
json() { python3 -c "import json,sys; print(json.load(sys.stdin)$1)"; }

export KHACHAPURI_HOME="$(mktemp -d)"
work="$KHACHAPURI_HOME"
"$kh" -q dev --json --store-listen 127.0.0.1:0 --provider-listen 127.0.0.1:0 --gateway-listen 127.0.0.1:0 --chain-port 0 \
  --signature-limit "${SIGNATURE_LIMIT:-20}" \
  >"$work/dev.out" 2>"$work/dev.log" &
dpid=$!; pids+=("$dpid")
for _ in $(seq 1 600); do [ -s "$work/dev.out" ] && break; sleep 0.1; done
info=$(head -1 "$work/dev.out")
purl=$(echo "$info" | json '["provider_url"]')
surl=$(echo "$info" | json '["store_url"]')
chain_id=$(echo "$info" | json '["chain_id"]')
escrow=$(echo "$info" | json '["escrow"]')
wait_http "$purl/healthz"
operator=$(curl -fsS "$purl/.well-known/khachapuri" | json '["address"]')
# `khachapuri dev` runs the store and the provider in-process (anvil is its child): the
# node is the dev process itself.
echo "==> node process: $(ps -o pid=,comm= -p "$dpid")" >&2

deployed=$("$kh" -q deploy "$wasm" --public --json)
cid=$(echo "$deployed" | json '["cid"]')
artifact=$(echo "$deployed" | json '["artifact_cid"]')
export KHACHAPURI_BENCH_KEY=0xac0974bec39a17e36ba4a6b4d238ff944bacb478cbed5efcae784d7bf4f2ff80
"$kh" -q escrow deposit 9000 >/dev/null
# Enough credit for both phases at full speed (~0.0001 USDC a call: 400 USDC ran out
# after ~4M calls, turning the second phase into 402s).
"$kh" -q escrow fund dev 9000 >/dev/null
prepaid=$("$kb" header --chain-id "$chain_id" --escrow "$escrow" --provider "$operator" --amount 9000 | json '["header"]')
curl -fsS -o /dev/null -H "Khachapuri-Payment: $prepaid" "$purl/$cid/"

echo "==> publishing the attack material ($specs fresh specs, walk bombs) to the dev store" >&2
"$kb" hostile prepare --store "$surl" --artifact "$artifact" --specs "$specs" \
  --out "$work/plan.json" >"$work/prepare.json"

rss_kb() { awk '/VmRSS/ {print $2}' "/proc/$1/status" 2>/dev/null || echo 0; }
fds() { ls "/proc/$1/fd" 2>/dev/null | wc -l; }
# Appends "phase seconds rss_kb fds" every $sample_every s until killed.
sampler() {
  local start=$SECONDS
  while :; do
    echo "$1 $((SECONDS - start)) $(rss_kb "$dpid") $(fds "$dpid")" >>"$work/samples"
    sleep "$sample_every"
  done
}
# wrk output -> "rps p50_ms p99_ms non2xx socket_errors"; non-2xx answers are counted,
# not fatal (under attack a 503 is a finding).
wrk_honest() {
  wrk -t"$threads" -c"$conns" -d"$1" --latency -H "Khachapuri-Payment: $prepaid" "$purl/$cid/" | python3 -c '
import re,sys
t=sys.stdin.read()
rps=float(re.search(r"Requests/sec:\s+([\d.]+)",t).group(1))
def ms(p):
    m=re.search(r"^\s+"+p+r"%\s+([\d.]+)(us|ms|s)\s*$",t,re.M)
    v=float(m.group(1)); return v/1000 if m.group(2)=="us" else v*1000 if m.group(2)=="s" else v
bad=re.search(r"Non-2xx or 3xx responses: (\d+)",t)
se=re.search(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)",t)
p50, p99 = ms("50"), ms("99")
print(f"{rps:.0f} {p50:.3f} {p99:.3f} {bad.group(1) if bad else 0} {sum(map(int,se.groups())) if se else 0}")'
}

echo "==> warm-up (5 s)" >&2
wrk_honest 5s >/dev/null
: >"$work/samples"

echo "==> phase 1: honest paid load alone, ${soak}s (wrk -t$threads -c$conns)" >&2
sampler alone & spid=$!
read -r a_rps a_p50 a_p99 a_bad a_err < <(wrk_honest "${soak}s")
kill "$spid"; wait "$spid" 2>/dev/null || true

rates="walk bombs ${walk_rate}/s, slowloris ${slowloris_conns} conns + slow bodies ${slow_body_conns} conns (one write per ${trickle}s), oversize bodies ${oversize_rate}/s, fresh random-key vouchers ${fresh_key_rate}/s, unpaid fresh deployments ${unpaid_rate}/s, upload attempts ${upload_rate}/s"
echo "==> phase 2: the same load mixed with hostile traffic, ${soak}s" >&2
echo "    hostile rates: $rates" >&2
rm -f "$work/ready"
KHACHAPURI_BENCH_PAYMENT="$prepaid" "$kb" hostile run --url "$purl" --plan "$work/plan.json" \
  --deployment "$cid" --chain-id "$chain_id" --escrow "$escrow" --provider "$operator" \
  --duration "$((soak + 4))" --ready-file "$work/ready" \
  --walk-rate "$walk_rate" --slowloris-conns "$slowloris_conns" --slow-body-conns "$slow_body_conns" \
  --trickle-secs "$trickle" --oversize-rate "$oversize_rate" --fresh-key-rate "$fresh_key_rate" \
  --unpaid-rate "$unpaid_rate" --upload-rate "$upload_rate" \
  >"$work/hostile.json" 2>"$work/hostile.log" &
hpid=$!; pids+=("$hpid")
for _ in $(seq 1 300); do [ -e "$work/ready" ] && break; sleep 0.1; done
[ -e "$work/ready" ] || { echo "the hostile process did not start: $(cat "$work/hostile.log")" >&2; exit 1; }
sleep 2 # let the slow connections pile up first
sampler mixed & spid=$!
read -r m_rps m_p50 m_p99 m_bad m_err < <(wrk_honest "${soak}s")
kill "$spid"; wait "$spid" 2>/dev/null || true
wait "$hpid" || { echo "hostile run failed: $(cat "$work/hostile.log")" >&2; exit 1; }

alive=no; kill -0 "$dpid" 2>/dev/null && alive=yes
health=$(curl -s -o /dev/null -w '%{http_code}' --max-time 5 "$purl/healthz" || true)
panics=$(grep -c "panicked" "$work/dev.log" || true)
crashes=0; [ "$alive" = yes ] && [ "$health" = 200 ] && [ "$panics" = 0 ] || crashes=1
final_rss=$(rss_kb "$dpid"); final_fds=$(fds "$dpid")

SOAK="$soak" CONNS="$conns" THREADS="$threads" RATES="$rates" ALIVE="$alive" HEALTH="$health" \
PANICS="$panics" CRASHES="$crashes" FINAL_RSS="$final_rss" FINAL_FDS="$final_fds" \
A="$a_rps $a_p50 $a_p99 $a_bad $a_err" M="$m_rps $m_p50 $m_p99 $m_bad $m_err" \
python3 - "$work/samples" "$work/hostile.json" <<'EOF' | tee "$out"
import json, os, sys, datetime
e = os.environ
samples = [l.split() for l in open(sys.argv[1]) if l.strip()]
h = json.load(open(sys.argv[2]))
a, m = e["A"].split(), e["M"].split()
ratio = float(m[0]) / float(a[0]) if float(a[0]) else 0.0
print("# Hostile-load soak benchmark\n")
print(f"{datetime.date.today()} on {os.cpu_count()} cores; {e['SOAK']} s per phase; honest load: "
      f"wrk -t{e['THREADS']} -c{e['CONNS']} with one prepaid voucher on examples/hello (public spec)\n")
print(f"Hostile rates (second process): {e['RATES']}.\n")
print("| phase | honest req/s | p50 ms | p99 ms | non-2xx | socket errors |")
print("|---|---|---|---|---|---|")
print(f"| alone | {a[0]} | {a[1]} | {a[2]} | {a[3]} | {a[4]} |")
print(f"| mixed with hostile traffic | {m[0]} | {m[1]} | {m[2]} | {m[3]} | {m[4]} |")
print(f"\nHonest throughput mixed / alone: **{ratio:.2f}** (goal >= 0.8).\n")
print("Node process (the `khachapuri dev` process: provider and store in-process), sampled every few seconds:\n")
print("| phase | samples | RSS min MiB | RSS max MiB | fds min | fds max |")
print("|---|---|---|---|---|---|")
for ph in ("alone", "mixed"):
    rows = [s for s in samples if s[0] == ph]
    if not rows: continue
    r = [int(s[2]) / 1024 for s in rows]; f = [int(s[3]) for s in rows]
    print(f"| {ph} | {len(rows)} | {min(r):.1f} | {max(r):.1f} | {min(f)} | {max(f)} |")
print(f"\nAfter the run: RSS {int(e['FINAL_RSS'])/1024:.1f} MiB, {e['FINAL_FDS']} fds.\n")
print("<details><summary>time series (phase, s, RSS MiB, fds)</summary>\n")
print("| phase | s | RSS MiB | fds |\n|---|---|---|---|")
step = max(1, len(samples) // 40)
for s in samples[::step]:
    print(f"| {s[0]} | {s[1]} | {int(s[2])/1024:.1f} | {s[3]} |")
print("\n</details>\n")
print(f"Hostile answers by kind ({h['seconds']:.0f} s of attack):\n")
print("| kind | sent | outcomes | avg ms | max ms |")
print("|---|---|---|---|---|")
for kind, k in h["kinds"].items():
    outs = ", ".join(f"{o}: {n}" for o, n in sorted(k["outcomes"].items(), key=lambda x: -x[1]))
    avg = f"{k['avg_ms']:.1f}" if k["avg_ms"] else "-"
    mx = f"{k['max_ms']:.0f}" if k["max_ms"] else "-"
    print(f"| {kind} | {k['total']} | {outs} | {avg} | {mx} |")
fa, co = h["artifact_fetches"], h["compiles"]
print(f"\nNode counters over the attack: `khachapuri_artifact_fetches_total` {fa['before']} -> {fa['after']}, "
      f"`khachapuri_runtime_compiles_total` {co['before']} -> {co['after']} (unpaid calls must not move them).\n")
delta = ", ".join(f"`{k}` +{v:g}" for k, v in h["metrics_delta"].items())
print(f"All node counters that moved during the attack: {delta}\n")
print(f"Node process alive after the run: **{e['ALIVE']}** (`/healthz` {e['HEALTH']}, "
      f"{e['PANICS']} panics in its log). Crashes: **{e['CRASHES']}**.")
EOF
[ "$crashes" = 0 ] || { echo "the node crashed or stopped answering (see $work/dev.log)" >&2; exit 1; }
