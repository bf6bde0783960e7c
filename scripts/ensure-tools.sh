#!/usr/bin/env bash
# Tools the deployment tests use: kubectl (kustomize), promtool and prometheus, RabbitMQ's
# Prometheus plugin, and checkov in its own virtualenv (.tools; its pins clash with the dev
# tools, so it lives apart).
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

# The live monitoring test scrapes RabbitMQ's Prometheus plugin, which the cluster's
# RabbitmqCluster turns on too. Enabling a plugin on the running node needs no restart.
METRICS_PORT=${WXKF_TEST_RABBIT_METRICS_PORT:-15692}
metrics_answer() { timeout 2 bash -c "exec 3<>/dev/tcp/127.0.0.1/$METRICS_PORT" 2>/dev/null; }
if ! metrics_answer; then
    if command -v rabbitmq-plugins >/dev/null; then
        echo "ensure-tools: enabling RabbitMQ's Prometheus plugin (rabbitmq_prometheus, port $METRICS_PORT)"
        rabbitmq-plugins -q enable rabbitmq_prometheus >/dev/null
        for _ in $(seq 30); do metrics_answer && break; sleep 1; done
    fi
    if ! metrics_answer; then
        echo "ensure-tools: RabbitMQ's Prometheus plugin must answer on 127.0.0.1:$METRICS_PORT (rabbitmq-plugins enable rabbitmq_prometheus)" >&2
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
