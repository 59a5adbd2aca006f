#!/usr/bin/env bash
# Gateway benchmark (issue 12), all figures from one run on one machine, each a ratio
# against calling the provider directly:
#  1. requests/s of examples/hello directly, through the gateway (/dev/{cid}/) and through
#     a provider's tunnel (/tun/{cid}/): goals >= 0.7 and >= 0.5;
#  2. p50/p99 latency added by the gateway and by the tunnel;
#  3. throughput of one 100 MB answer directly, through the gateway and through a tunnel
#     (goal >= 0.8 of direct);
#  4. time to serve again through a tunnel after the gateway restarts.
#
#   bench/gateway.sh               # results in bench/results/gateway.md
#   DURATION=10s CONNS=16 bench/gateway.sh
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup
. scripts/env.sh

duration="${DURATION:-10s}"
conns="${CONNS:-16}"
threads="${THREADS:-2}"
out="bench/results/gateway.md"
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
"$kh" -q dev --free --json --store-listen 127.0.0.1:0 --provider-listen 127.0.0.1:0 \
  --gateway-listen 127.0.0.1:0 --chain-port 0 >"$KHACHAPURI_HOME/dev.out" 2>"$KHACHAPURI_HOME/dev.log" &
pids+=("$!")
for _ in $(seq 1 600); do [ -s "$KHACHAPURI_HOME/dev.out" ] && break; sleep 0.1; done
info=$(head -1 "$KHACHAPURI_HOME/dev.out")
purl=$(echo "$info" | json '["provider_url"]')
gurl=$(echo "$info" | json '["gateway_url"]')
wait_http "$purl/healthz"
wait_http "$gurl/healthz"
cid=$("$kh" -q deploy "$wasm" --public)

"$kb" tunnel --gateway "$gurl" --rpc-url "$(echo "$info" | json '["rpc_url"]')" \
  --registry "$(echo "$info" | json '["registry"]')" --store-url "$(echo "$info" | json '["store_url"]')" \
  >"$KHACHAPURI_HOME/tunnel.out" 2>"$KHACHAPURI_HOME/tunnel.log" &
pids+=("$!")
for _ in $(seq 1 600); do [ -s "$KHACHAPURI_HOME/tunnel.out" ] && break; sleep 0.1; done
tinfo=$(head -1 "$KHACHAPURI_HOME/tunnel.out")
[ -n "$tinfo" ] || { cat "$KHACHAPURI_HOME/tunnel.log" >&2; exit 1; }
big=$(echo "$tinfo" | json '["big_url"]')
restart=$(echo "$tinfo" | json '["restart"]["median_s"]')

direct="$purl/$cid/"; via_gw="$gurl/dev/$cid/"; via_tun="$gurl/tun/$cid/"
for u in "$direct" "$via_gw" "$via_tun"; do curl -fsS -o /dev/null "$u"; done
for u in "$direct" "$via_gw" "$via_tun"; do run_wrk "$u" >/dev/null; done
best() { python3 -c "import sys; rows=[l.split() for l in sys.stdin if l.strip()]; print(' '.join(max(rows,key=lambda r: float(r[0]))))"; }
rd=""; rg=""; rt=""
for _ in 1 2 3; do
  rd+="$(run_wrk "$direct")"$'\n'
  rg+="$(run_wrk "$via_gw")"$'\n'
  rt+="$(run_wrk "$via_tun")"$'\n'
done
read -r d_rps d_p50 d_p99 <<<"$(echo "$rd" | best)"
read -r g_rps g_p50 g_p99 <<<"$(echo "$rg" | best)"
read -r t_rps t_p50 t_p99 <<<"$(echo "$rt" | best)"

# One 100 MB answer: best of three downloads each.
speed() { for _ in 1 2 3; do curl -fsS -o /dev/null -w '%{speed_download}\n' "$1"; done | sort -n | tail -1; }
b_direct=$(speed "$big/x"); b_gw=$(speed "$gurl/big/x"); b_tun=$(speed "$gurl/bigtun/x")

python3 - "$d_rps" "$d_p50" "$d_p99" "$g_rps" "$g_p50" "$g_p99" "$t_rps" "$t_p50" "$t_p99" \
  "$b_direct" "$b_gw" "$b_tun" "$restart" "$duration" "$conns" >"$out" <<'PY'
import sys
a=[float(x) for x in sys.argv[1:14]]; duration, conns = sys.argv[14], sys.argv[15]
d,dp50,dp99,g,gp50,gp99,t,tp50,tp99,bd,bg,bt,restart=a
mb=lambda v: v/1e6
print(f"""# Gateway benchmark

wrk -t2 -c{conns} -d{duration} on examples/hello (best of 3 alternated runs each), one 100 MB
answer with curl (best of 3), same run, same machine.

| path | req/s | ratio | p50 ms | p99 ms | added p50 | added p99 |
|---|---|---|---|---|---|---|
| provider directly | {d:.0f} | 1.00 | {dp50:.2f} | {dp99:.2f} | | |
| through the gateway | {g:.0f} | {g/d:.2f} (goal ≥ 0.7) | {gp50:.2f} | {gp99:.2f} | {gp50-dp50:+.2f} | {gp99-dp99:+.2f} |
| through a tunnel | {t:.0f} | {t/d:.2f} (goal ≥ 0.5) | {tp50:.2f} | {tp99:.2f} | {tp50-dp50:+.2f} | {tp99-dp99:+.2f} |

| 100 MB answer | MB/s | ratio |
|---|---|---|
| directly | {mb(bd):.0f} | 1.00 |
| through the gateway | {mb(bg):.0f} | {bg/bd:.2f} |
| through a tunnel | {mb(bt):.0f} | {bt/bd:.2f} (goal ≥ 0.8) |

Serving again through a tunnel after a gateway restart: {restart*1000:.0f} ms (median of 5).
""")
PY
cat "$out"
