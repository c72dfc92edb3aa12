#!/usr/bin/env bash
# Shared helpers for the scripts: install missing system tools from Debian's packages.

apt_updated=0
need_pkg() { # need_pkg COMMAND PACKAGE
  if ! command -v "$1" >/dev/null 2>&1; then
    if [ "$apt_updated" = 0 ]; then
      echo "==> apt-get update (to install $2)"
      apt-get update -qq
      apt_updated=1
    fi
    echo "==> apt-get install -y $2"
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "$2" >/dev/null
  fi
}

ensure_tools() {
  need_pkg git git
  need_pkg cc gcc
  need_pkg python3 python3
  # venv is a separate package on Debian.
  python3 -c "import ensurepip" >/dev/null 2>&1 || need_pkg __no_such_cmd__ python3-venv
  # The shared cache's tests run a real Redis Cluster.
  need_pkg redis-server redis-server
  need_pkg redis-cli redis-tools
  need_pkg redis-sentinel redis-sentinel
  # Git over SSH is tested against a real OpenSSH server on loopback.
  need_pkg ssh openssh-client
  need_pkg sshd openssh-server
  need_pkg docker-registry docker-registry
  # The Kustomize renderer runs `kustomize build` or `kubectl kustomize`.
  if ! command -v kustomize >/dev/null 2>&1 && ! command -v kubectl >/dev/null 2>&1; then
    need_pkg kubectl kubernetes-client || echo "warning: neither kustomize nor kubectl is available; Kustomize tests will fail" >&2
  fi
  ensure_helm
  ensure_node
}

# Node.js 20+ and npm build the web UI (ui/, pinned in its package-lock.json) during the
# server's cargo build.
ensure_node() {
  need_pkg node nodejs
  need_pkg npm npm
  local major
  major="$(node -p 'process.versions.node.split(".")[0]' 2>/dev/null || echo 0)"
  if [ "$major" -lt 20 ]; then
    echo "warning: Node.js $(node --version 2>/dev/null) is older than 20; building the web UI (Vite 7) needs 20.19+" >&2
  fi
}

# Debian's Chromium and ChromeDriver, for the web UI's browser tests.
ensure_browser() {
  need_pkg chromium chromium
  need_pkg chromedriver chromium-driver
}

# Helm: when no `helm` binary is on PATH, install Helm v4's engine from PyPI
# (helm-python-sdk) in a virtualenv and put a small `helm template` shim on PATH.
ensure_helm() {
  if command -v helm >/dev/null 2>&1; then
    return
  fi
  local base="$HOME/.cache/flotilla"
  local venv="$base/venv"
  if [ ! -x "$venv/bin/python" ] || ! "$venv/bin/python" -c "import helm_python, yaml" >/dev/null 2>&1; then
    echo "==> installing helm-python-sdk (Helm's engine) into $venv"
    python3 -m venv "$venv"
    "$venv/bin/pip" install -q helm-python-sdk pyyaml
  fi
  mkdir -p "$base/bin"
  printf '#!/bin/sh\nexec "%s" "%s" "$@"\n' "$venv/bin/python" "$PWD/scripts/helm-shim.py" >"$base/bin/helm"
  chmod +x "$base/bin/helm"
  export PATH="$base/bin:$PATH"
}
