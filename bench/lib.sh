# Shared by the bench scripts (sourced): free ports, readiness, wrk runs, cleanup.
# The caller sets `threads`, `conns` and `duration` before calling run_wrk, and adds the
# pids of what it starts to `pids` so they stop when the script exits.

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
wait_http() { for _ in $(seq 1 300); do curl -fsS -o /dev/null "$1" 2>/dev/null && return 0; sleep 0.1; done; echo "timeout waiting for $1" >&2; return 1; }
# wrk output → "rps p50 p99" (latencies in ms); any non-2xx answer fails the run.
run_wrk() {
  wrk -t"$threads" -c"$conns" -d"$duration" --latency "$@" | python3 -c '
import re,sys
t=sys.stdin.read()
rps=float(re.search(r"Requests/sec:\s+([\d.]+)",t).group(1))
def ms(p):
    m=re.search(r"^\s+"+p+r"%\s+([\d.]+)(us|ms|s)\s*$",t,re.M)
    v=float(m.group(1)); return v/1000 if m.group(2)=="us" else v*1000 if m.group(2)=="s" else v
errs=re.search(r"Non-2xx or 3xx responses: (\d+)",t)
if errs: sys.exit("non-2xx responses: "+errs.group(1))
p50, p99 = ms("50"), ms("99")
print(f"{rps:.0f} {p50:.3f} {p99:.3f}")'
}

pids=()
cleanup() { for p in "${pids[@]}"; do kill -TERM "$p" 2>/dev/null || true; done; wait 2>/dev/null || true; }
trap cleanup EXIT
