#!/usr/bin/env bash
# Import throughput of `khachapuri store add` on a 1 GiB file against `sha256sum` of the
# same file in the same run (the physical floor: the importer must hash every byte once),
# with the peak RSS of both. Usage: bench/store-import.sh [SIZE_MIB]   (default 1024)
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
cd "$root"
size_mib="${1:-1024}"
bytes=$((size_mib << 20))

cargo build --quiet --release --locked -p khachapuri
bin="$root/target/release/khachapuri"

work="$(mktemp -d "${TMPDIR:-/tmp}/khachapuri-bench.XXXXXX")"
trap 'rm -rf "$work"' EXIT
# Deterministic incompressible bytes (AES-CTR keystream); no chunk repeats.
(set +o pipefail; openssl enc -aes-128-ctr -K 000102030405060708090a0b0c0d0e0f -iv 0 -nosalt -in /dev/zero 2>/dev/null | head -c "$bytes") > "$work/input"
cat "$work/input" > /dev/null # both runs read from the page cache

# measure NAME CMD... -> prints "seconds max_rss_kib"
measure() {
  local out="$work/$1.time"; shift
  if [ -x /usr/bin/time ]; then
    /usr/bin/time -f '%e %M' -o "$out" "$@" > "$work/stdout" 2>/dev/null
    cat "$out"
  else
    local start end
    start=$(date +%s.%N); "$@" > "$work/stdout" 2>/dev/null; end=$(date +%s.%N)
    echo "$(echo "$end - $start" | bc) ?"
  fi
}

read -r sha_s sha_rss < <(measure sha256sum sha256sum "$work/input")
read -r add_s add_rss < <(measure add "$bin" --quiet --home "$work/home" store add --json "$work/input")
cid="$(sed -n 's/.*"cid":"\([^"]*\)".*/\1/p' "$work/stdout")"

mbps() { awk -v b="$bytes" -v s="$1" 'BEGIN { printf "%.0f", b / 1e6 / s }'; }
echo "file:            $size_mib MiB ($bytes bytes), CID $cid"
echo "sha256sum:       ${sha_s}s  $(mbps "$sha_s") MB/s  peak RSS ${sha_rss} KiB"
echo "khachapuri add:  ${add_s}s  $(mbps "$add_s") MB/s  peak RSS ${add_rss} KiB  (blocks fsynced into a fresh store)"
awk -v a="$add_s" -v s="$sha_s" 'BEGIN { printf "ratio:           store add takes %.2fx the time of sha256sum\n", a / s }'
