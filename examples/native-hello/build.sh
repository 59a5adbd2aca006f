#!/usr/bin/env bash
# Builds target/native-hello.tar: a static x86-64 Linux program named `main` at the root
# of a tar (the `process` runtime's artifact), with the system C compiler and static
# glibc (Debian: gcc + libc6-dev, see scripts/setup).
set -euo pipefail
cd "$(dirname "$0")"
cc="${CC:-cc}"
mkdir -p target/root
"$cc" -static -O2 -Wall -Wextra -s -o target/root/main main.c
# Fixed owner, mode and time: the same source gives the same archive, hence the same CID.
tar --owner=0 --group=0 --numeric-owner --mode=0755 --mtime=@0 --format=ustar \
    -C target/root -cf target/native-hello.tar main
