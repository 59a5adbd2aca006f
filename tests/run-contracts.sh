#!/usr/bin/env bash
# Solidity: rebuild the contracts, fail if the committed ABI/bytecode artifacts (which the
# Rust bindings compile in) differ from the sources, then run the forge test suite.
set -euo pipefail
cd "$(dirname "$0")/../contracts"
. ../scripts/env.sh
forge build
node export-artifacts.js --check
forge test --gas-report
