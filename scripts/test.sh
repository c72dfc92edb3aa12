#!/usr/bin/env bash
# Run every check CI runs: formatting, clippy (warnings are errors) and the whole test suite.
# Installs what the tests need when it is missing. Reuses a cargo target dir outside the clone.
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/lib.sh
ensure_tools
ensure_browser
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/flotilla/target}"
mkdir -p "$CARGO_TARGET_DIR"
echo "==> cargo fmt --check"
cargo fmt --all -- --check
echo "==> cargo clippy (target dir $CARGO_TARGET_DIR)"
cargo clippy --workspace --all-targets --locked -- -D warnings
echo "==> cargo test"
cargo test --workspace --locked --no-fail-fast
