#!/usr/bin/env bash
# Round-trip times of /khachapuri/attest/1, /capacity/1 and /provision/1 on loopback, over
# TCP (noise + yamux) and QUIC, release build: 280 measured exchanges each after 20 warm-up
# ones, against a provider answering with the test attestation hierarchy (signature and
# evidence checks included on both sides; provisioning here does no fetch or compile —
# crates/provider/tests/p2p.rs times the real one). Prints p50/p99 per protocol.
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/env.sh
cargo test --release -p khachapuri-p2p --test swarm round_trips -- --ignored --nocapture 2>&1 \
  | grep -E "p50|test result"
