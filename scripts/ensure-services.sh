#!/usr/bin/env bash
# Make sure RabbitMQ and Redis answer on loopback before the integration tests run.
# Already running: use them. Missing on Debian as root: install from the OS packages and
# start them. Otherwise stop with a message that says exactly what to install.
set -euo pipefail

AMQP_PORT=${WXKF_TEST_AMQP_PORT:-5672}
REDIS_PORT=${WXKF_TEST_REDIS_PORT:-6379}
WAIT_S=${WXKF_SERVICES_WAIT_S:-90}

answers() { timeout 2 bash -c "exec 3<>/dev/tcp/127.0.0.1/$1" 2>/dev/null; }

redis_ready() { answers "$REDIS_PORT" && [ "$(redis-cli -p "$REDIS_PORT" ping 2>/dev/null)" = "PONG" ]; }
# An open port is not enough: RabbitMQ accepts TCP before its vhosts are up.
rabbit_ready() { answers "$AMQP_PORT" && rabbitmqctl -q await_startup >/dev/null 2>&1; }

wait_for() {
    local name=$1 check=$2 deadline=$((SECONDS + WAIT_S))
    until $check; do
        if ((SECONDS >= deadline)); then
            echo "ensure-services: $name did not become ready within ${WAIT_S}s" >&2
            exit 1
        fi
        sleep 1
    done
}

can_install() { [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; }

need=()
command -v redis-server >/dev/null && command -v redis-cli >/dev/null || need+=(redis-server)
command -v rabbitmq-server >/dev/null && command -v rabbitmqctl >/dev/null || need+=(rabbitmq-server)

if ! redis_ready || ! answers "$AMQP_PORT"; then
    if ((${#need[@]})); then
        if can_install; then
            echo "ensure-services: installing ${need[*]} from the OS packages"
            DEBIAN_FRONTEND=noninteractive apt-get update -qq
            DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
        else
            echo "ensure-services: RabbitMQ and Redis must answer on 127.0.0.1:$AMQP_PORT and :$REDIS_PORT." >&2
            echo "  Install them (Debian/Ubuntu: sudo apt-get install rabbitmq-server redis-server)," >&2
            echo "  start them (sudo rabbitmq-server -detached; redis-server --daemonize yes), then run the command again." >&2
            exit 1
        fi
    fi
fi

if ! redis_ready; then
    echo "ensure-services: starting redis-server on 127.0.0.1:$REDIS_PORT"
    mkdir -p /tmp/wxkf-redis
    redis-server --daemonize yes --bind 127.0.0.1 --port "$REDIS_PORT" --save "" --appendonly no \
        --dir /tmp/wxkf-redis --logfile /tmp/wxkf-redis/redis.log
    wait_for redis redis_ready
fi

if ! rabbit_ready; then
    if ! answers "$AMQP_PORT"; then
        echo "ensure-services: starting rabbitmq-server on 127.0.0.1:$AMQP_PORT"
        # Tests create a vhost per module and two connections per bus client; RabbitMQ's
        # socket budget derives from this limit, and the usual 1024 runs short.
        ulimit -n 65536 2>/dev/null || ulimit -n "$(ulimit -Hn)" 2>/dev/null || true
        if [ "$(id -u)" = 0 ] && [ -x /usr/lib/rabbitmq/bin/rabbitmq-server ] && id rabbitmq >/dev/null 2>&1; then
            # Debian's wrapper switches user through su, whose PAM session resets the limit:
            # raise it inside the switched shell instead.
            su rabbitmq -s /bin/sh -c "cd /var/lib/rabbitmq && ulimit -n $(ulimit -n) && \
                exec /usr/lib/rabbitmq/bin/rabbitmq-server -detached"
        else
            rabbitmq-server -detached
        fi
    fi
    wait_for rabbitmq rabbit_ready
fi

echo "ensure-services: RabbitMQ on 127.0.0.1:$AMQP_PORT and Redis on 127.0.0.1:$REDIS_PORT answer"
