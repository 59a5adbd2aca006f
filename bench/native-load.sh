#!/usr/bin/env bash
# Load benchmark (issue 13): the `process` runtime against wasm, same run, same provider
# (`khachapuri dev --free`, which enables `process`): examples/native-hello (a static C
# program, one fresh bubblewrap sandbox per request) against examples/hello (a wasi-http
# component) and examples/c-hello (the same CGI program as wagi), wrk -t2 -c16 and -c1.
#
# Warm sandboxes: a sandbox may never serve two requests, so the pool only starts each
# one ahead of its request. The process row runs twice: sandboxes started on arrival
# ("-"), then with WARM (default 4) started ahead per program (`khachapuri dev
# --warm-sandboxes N`). The script also measures the CPU and wall time of starting a
# sandbox exactly as the runtime does (`bwrap` with the same namespaces and mounts)
# against running the same program bare (fork + exec only).
#
#   bench/native-load.sh            # results in bench/results/native-load.md
#   DURATION=10s CONNS=16 bench/native-load.sh
#   PROFILE=dev bench/native-load.sh   # the dev build (deps at opt-level 1): quicker to
#                                      # build, slower wasm; the process row barely moves
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup
. scripts/env.sh

duration="${DURATION:-10s}"
conns="${CONNS:-16}"
threads="${THREADS:-2}"
out="bench/results/native-load.md"
mkdir -p bench/results

profile="${PROFILE:-release}"
echo "==> building khachapuri ($profile), examples/hello, c-hello and native-hello" >&2
cargo build --profile "$profile" --locked -p khachapuri
(cd examples/hello && env -u CARGO_TARGET_DIR cargo build --release --target wasm32-wasip2 --quiet)
examples/c-hello/build.sh
examples/native-hello/build.sh
dir_of_profile=$([ "$profile" = dev ] && echo debug || echo "$profile")
kh="${CARGO_TARGET_DIR:-$PWD/target}/$dir_of_profile/khachapuri"
wasm="$PWD/examples/hello/target/wasm32-wasip2/release/hello.wasm"
cgi_wasm="$PWD/examples/c-hello/target/c-hello.wasm"
native="$PWD/examples/native-hello/target/native-hello.tar"

. bench/lib.sh

warm_n="${WARM:-4}"
# One dev network per pool setting: without warm sandboxes (every row), then with
# $warm_n started ahead per program (the process row again), same build, same run.
start_dev() {
  export KHACHAPURI_HOME="$(mktemp -d)"
  "$kh" -q dev --free --warm-sandboxes "$1" --store-listen 127.0.0.1:0 --provider-listen 127.0.0.1:0 --gateway-listen 127.0.0.1:0 >"$KHACHAPURI_HOME/dev.out" 2>"$KHACHAPURI_HOME/dev.log" &
  dpid=$!; pids+=("$dpid")
  for _ in $(seq 1 300); do grep -q provider "$KHACHAPURI_HOME/dev.out" 2>/dev/null && break; sleep 0.1; done
  purl=$("$kh" info --json | python3 -c 'import json,sys; print(json.load(sys.stdin)["providers"][0]["url"])')
  curl -fsS "$purl/.well-known/khachapuri" | python3 -c 'import json,sys; r=json.load(sys.stdin)["runtimes"]; assert "process" in r, r'
  hello=$("$kh" -q deploy "$wasm" --public)
  cgi=$("$kh" -q deploy "$cgi_wasm" --public)
  nat=$("$kh" -q deploy "$native" --public)
}
stop_dev() { kill -TERM "$dpid"; wait "$dpid" 2>/dev/null || true; }

rows=()
measure_rows() {   # $1 = label of the pool setting, rest = "runtime function cid" specs
  local pool=$1; shift
  for c in "$conns" 1; do
    conns_now=$c
    for spec in "$@"; do
      read -r rt fn cid <<<"$spec"
      t_now=$(( conns_now < threads ? conns_now : threads ))
      threads=$t_now conns=$conns_now run_wrk "$purl/$cid/" >/dev/null   # warm-up
      read -r rps p50 p99 < <(threads=$t_now conns=$conns_now run_wrk "$purl/$cid/")
      rows+=("| $rt | $fn | $pool | $conns_now | $rps | $p50 | $p99 |")
    done
  done
}

start_dev 0
first=$(curl -fsS -o /dev/null -w '%{time_total}' "$purl/$nat/")   # fetch + unpack
measure_rows "-" "wasi-http examples/hello $hello" "wagi examples/c-hello $cgi" "process examples/native-hello $nat"
sdir="$KHACHAPURI_HOME"
stop_dev
start_dev "$warm_n"
curl -fsS -o /dev/null "$purl/$nat/"
measure_rows "warm $warm_n" "process examples/native-hello $nat"
stop_dev
KHACHAPURI_HOME="$sdir"

# What a warm pool could save per request: sandbox start-up vs a bare fork + exec of the
# same program, N sequential runs each (CPU = user + sys of the children).
n=200
# The unpacked program, copied where the sandbox uid may read it (the runtime hands the
# directory over by descriptor instead; a shell cannot).
main=$(find "$KHACHAPURI_HOME" "${TMPDIR:-/tmp}"/khachapuri-unpacked-* -name main 2>/dev/null | head -1)
dir=$(mktemp -d); chmod 755 "$dir"; cp "$main" "$dir/main"; chmod 555 "$dir/main"
measure() {
  python3 - "$n" "$@" <<'PY'
import os, subprocess, sys, time
n = int(sys.argv[1]); cmd = sys.argv[2:]
def pre():
    os.setgid(1800000000); os.setgroups([]); os.setuid(1800000000)
r0 = os.times(); t0 = time.perf_counter()
for _ in range(n):
    subprocess.run(cmd, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, check=True,
                   preexec_fn=pre if cmd[0] == "bwrap" else None)
t1 = time.perf_counter(); r1 = os.times()
cpu = (r1.children_user - r0.children_user) + (r1.children_system - r0.children_system)
print(f"{(t1 - t0) / n * 1000:.2f} {cpu / n * 1000:.2f}")
PY
}
read -r bare_wall bare_cpu < <(measure "$dir/main")
read -r sb_wall sb_cpu < <(measure bwrap --unshare-all --unshare-user --disable-userns --uid 65534 --gid 65534 \
  --hostname khachapuri --die-with-parent --new-session --cap-drop ALL --ro-bind "$dir" /app \
  --proc /proc --dev /dev --remount-ro /dev --size 16777216 --tmpfs /tmp --remount-ro / --chdir /app --clearenv -- /app/main)

{
  echo "# Native (process) load benchmark"
  echo
  echo "$(date -u +%F) on $(nproc) cores; wrk -t$threads -d$duration; one \`khachapuri dev --free\` provider ($profile build), same run"
  echo
  echo "| runtime | function | sandboxes | connections | req/s | p50 ms | p99 ms |"
  echo "|---|---|---|---|---|---|---|"
  printf '%s\n' "${rows[@]}"
  echo
  echo "- first call of native-hello after deploy (fetch + unpack + run): ${first}s"
  echo "- per request, $n sequential runs: sandbox start-up + program ${sb_wall} ms wall, ${sb_cpu} ms CPU;"
  echo "  the same program bare (fork + exec, no sandbox) ${bare_wall} ms wall, ${bare_cpu} ms CPU"
} | tee "$out"
