#!/usr/bin/env bash
# Start kubesim with a few virtual clusters and show them answering over the real Kubernetes API.
# (The full demo fleet - Git, repo-server, controller - arrives with the end-to-end slice.)
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/lib.sh
ensure_tools
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/flotilla/target}"
echo "==> building kubesim"
cargo build --release --locked -p flotilla-loadtest --bin kubesim
dir=$(mktemp -d)
"$CARGO_TARGET_DIR/release/kubesim" --tls --clusters "${CLUSTERS:-3}" --kubeconfig "$dir/kubeconfig" --admin-port 0 &
pid=$!
trap 'kill $pid 2>/dev/null || true; rm -rf "$dir"' EXIT
for _ in $(seq 50); do [ -s "$dir/kubeconfig" ] && break; sleep 0.1; done
echo "==> kubesim is serving; kubeconfig at $dir/kubeconfig"
if command -v kubectl >/dev/null 2>&1; then
  echo "==> the control plane's Argo CD-format cluster Secrets:"
  kubectl --kubeconfig "$dir/kubeconfig" -n argocd get secrets -l argocd.argoproj.io/secret-type=cluster
  echo "==> a Deployment applied to cluster-001 becomes available (kwok-style simulation):"
  kubectl --kubeconfig "$dir/kubeconfig" --context cluster-001 apply --server-side --validate=false -f - <<'YAML'
apiVersion: apps/v1
kind: Deployment
metadata: {name: web, namespace: default}
spec:
  replicas: 2
  selector: {matchLabels: {app: web}}
  template:
    metadata: {labels: {app: web}}
    spec: {containers: [{name: web, image: "nginx:1.27"}]}
YAML
  sleep 1
  kubectl --kubeconfig "$dir/kubeconfig" --context cluster-001 get deployment web
fi
if [ -t 0 ]; then
  echo "==> press Enter to stop"
  read -r _
fi
