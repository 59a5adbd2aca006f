#!/usr/bin/env bash
# Builds target/c-hello.wasm: a WASI preview1 module (wagi runtime) from main.c,
# with Debian's clang-14 + wasi-libc + libclang-rt-14-dev-wasm32 (see scripts/setup).
set -euo pipefail
cd "$(dirname "$0")"
cc="${CC:-clang-14}"
sysroot=()
# Debian's wasi-libc installs into clang's multiarch paths; a wasi-sdk style sysroot
# is used when present.
[ -d /usr/share/wasi-sysroot ] && sysroot=(--sysroot=/usr/share/wasi-sysroot)
mkdir -p target
"$cc" --target=wasm32-wasi "${sysroot[@]}" -O2 -fuse-ld=lld -Wall -Wextra -Wl,--strip-all -o target/c-hello.wasm main.c
