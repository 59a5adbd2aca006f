# Sourced by scripts: puts the pinned npm tools (anvil, forge, cast, solc) on PATH.
KHACHAPURI_ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
export KHACHAPURI_ROOT
export PATH="$KHACHAPURI_ROOT/tools/node_modules/.bin:$PATH"
