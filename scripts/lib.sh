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
  # The Kustomize renderer runs `kustomize build` or `kubectl kustomize`.
  if ! command -v kustomize >/dev/null 2>&1 && ! command -v kubectl >/dev/null 2>&1; then
    need_pkg kubectl kubernetes-client || echo "warning: neither kustomize nor kubectl is available; Kustomize tests will fail" >&2
  fi
}
