#!/usr/bin/env bash
# Tools the deployment tests use: kubectl (kustomize), promtool and prometheus, and checkov in
# its own virtualenv (.tools; its pins clash with the dev tools, so it lives apart).
set -euo pipefail
PYTHON=${PYTHON:-python3}
TOOLS=${TOOLS:-.tools}

if ! command -v promtool >/dev/null || ! command -v prometheus >/dev/null; then
    if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
        echo "ensure-tools: installing prometheus (promtool) from the OS packages"
        DEBIAN_FRONTEND=noninteractive apt-get update -qq
        DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends prometheus >/dev/null
        # The package starts a server where an init system runs; the tests start their own.
        { command -v systemctl >/dev/null && systemctl disable --now prometheus >/dev/null 2>&1; } || true
    else
        echo "ensure-tools: promtool and prometheus are needed (Debian/Ubuntu: sudo apt-get install prometheus)" >&2
        exit 1
    fi
fi

if ! command -v kubectl >/dev/null; then
    echo "ensure-tools: kubectl (with its built-in kustomize) is needed to render deploy/k8s; install kubectl 1.27 or newer" >&2
    exit 1
fi

if [ ! -x "$TOOLS/bin/checkov" ]; then
    echo "ensure-tools: installing checkov into $TOOLS"
    "$PYTHON" -m venv "$TOOLS"
    "$TOOLS/bin/python" -m pip install --quiet --disable-pip-version-check 'checkov>=3.2'
fi
