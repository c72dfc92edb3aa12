#!/usr/bin/env bash
# The demo: build the release binaries, then run a demo fleet on this machine (kubesim
# clusters, a Git repository made from examples/repo, the repo-server, the controller, the
# example Applications) and show a deploy, an update and a prune. Pass --exit to stop at the end.
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/lib.sh
ensure_tools
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/flotilla/target}"
echo "==> building (release): flotilla-controller, flotilla-repo-server, flotilla-server, flotilla, flotilla-demo"
cargo build --release --locked -p flotilla-controller -p flotilla-repo-server -p flotilla-server \
  -p flotilla-cli -p flotilla-loadtest --bin flotilla-controller --bin flotilla-repo-server \
  --bin flotilla-server --bin flotilla --bin flotilla-demo
# The fleet starts the binaries just built (no second cargo run with another feature set).
export FLOTILLA_BIN_DIR="$CARGO_TARGET_DIR/release"
exec "$CARGO_TARGET_DIR/release/flotilla-demo" --examples examples "$@"
