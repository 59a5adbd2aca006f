#!/usr/bin/env bash
# Interop: `khachapuri store add --json` must give exactly the CIDs Helia's UnixFS
# importer gives with the unixfs-v1-2025 parameters, for empty, one-chunk, chunk-boundary,
# multi-chunk and two-level (over 1024 chunks) files. Run by scripts/test.
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
cd "$root"
. scripts/env.sh

command -v node >/dev/null || { echo "node is required (scripts/setup)" >&2; exit 1; }
[ -d tools/node_modules/ipfs-unixfs-importer ] || { echo "run scripts/setup first (npm tools)" >&2; exit 1; }

cargo build --quiet --locked -p khachapuri
bin="$root/target/debug/khachapuri"

work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
mib=$((1 << 20))

# Deterministic, non-repeating bytes (AES-CTR keystream of a fixed key), fast for GiBs.
# (openssl dies of SIGPIPE when head has enough: not an error here.)
pattern() { (set +o pipefail; openssl enc -aes-128-ctr -K 000102030405060708090a0b0c0d0e0f -iv 0 -nosalt -in /dev/zero 2>/dev/null | head -c "$1"); }

: > "$work/empty"
printf 'hello from the probe\n' > "$work/hello"
pattern "$mib" > "$work/one-chunk"
pattern $((mib + 1)) > "$work/chunk-plus-one"
pattern $((5 * mib + 123)) > "$work/five-chunks"
pattern $((1025 * mib + 7)) > "$work/two-level"

fail=0
check() { # name expected-size
  local file="$work/$1" out ours helia size
  out="$("$bin" --quiet --home "$work/home" store add --json "$file")"
  ours="$(node -e 'const j=JSON.parse(process.argv[1]); console.log(j.cid)' "$out")"
  size="$(node -e 'const j=JSON.parse(process.argv[1]); console.log(j.size)' "$out")"
  helia="$(node tests/interop/helia-cids.mjs "$file" | awk '{print $2}')"
  if [ "$ours" = "$helia" ] && [ "$size" = "$2" ]; then
    printf 'ok   %-15s %11s bytes  %s\n' "$1" "$size" "$ours"
  else
    printf 'FAIL %-15s ours=%s (size %s) helia=%s (size %s)\n' "$1" "$ours" "$size" "$helia" "$2"
    fail=1
  fi
}

check empty 0
check hello 21
check one-chunk "$mib"
check chunk-plus-one $((mib + 1))
check five-chunks $((5 * mib + 123))
check two-level $((1025 * mib + 7))

# The known CIDs of the issue, independently of Helia.
[ "$("$bin" --quiet --home "$work/home" store add "$work/hello")" = bafkreig33ifb5qhpnr4liegexo227he6j5ghhrm4sxwap2dqwplq2t66ni ] || { echo "FAIL hello known CID"; fail=1; }
[ "$("$bin" --quiet --home "$work/home" store add "$work/empty")" = bafkreihdwdcefgh4dqkjv67uzcmw7ojee6xedzdetojuzjevtenxquvyku ] || { echo "FAIL empty known CID"; fail=1; }

# And the big one reads back byte for byte from the local store.
cid="$("$bin" --quiet --home "$work/home" store add "$work/two-level")"
"$bin" --quiet --home "$work/home" store get "$cid" | cmp - "$work/two-level" || { echo "FAIL two-level export"; fail=1; }

exit "$fail"
