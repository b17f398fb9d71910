#!/usr/bin/env bash
# Make sure the RabbitMQ broker at $AMQP_URI answers, with its management HTTP API (the tests
# create a vhost each through it). A local broker (AMQP_URI unset or pointing at
# localhost/127.0.0.1) is installed (apt-get rabbitmq-server), started, and its management plugin
# enabled, when needed; a remote one is only checked. Waits are bounded by RABBITMQ_WAIT seconds
# (default 60). Used by `make broker`, so by `make run` and `make test`.
set -euo pipefail
source "$(dirname "$0")/lib/ensure.sh"

AMQP_URI="${AMQP_URI:-amqp://guest:guest@localhost:5672/}"
WAIT="${RABBITMQ_WAIT:-60}"
MGMT_PORT="${RABBITMQ_MANAGEMENT_PORT:-15672}"

# host, port, user and password of the AMQP URI, one per line
mapfile -t parts < <(python3 - "$AMQP_URI" <<'PY'
import sys, urllib.parse as up
u = up.urlsplit(sys.argv[1])
print(u.hostname or "localhost"); print(u.port or 5672)
print(up.unquote(u.username or "guest")); print(up.unquote(u.password or "guest"))
PY
)
HOST="${parts[0]}" PORT="${parts[1]}" USER="${parts[2]}" PASS="${parts[3]}"

port_open() { timeout 5 bash -c "exec 3<>/dev/tcp/$HOST/$PORT" 2>/dev/null; }
mgmt_up() { curl -sf -m 5 -u "$USER:$PASS" -o /dev/null "http://$HOST:$MGMT_PORT/api/overview"; }

case "$HOST" in
    localhost | 127.0.0.1 | ::1) local_broker=1 ;;
    *) local_broker=0 ;;
esac

install_rabbitmq() {
    say "RabbitMQ is not installed (instead, AMQP_URI can name a broker, or run" \
        "\`docker compose up rabbitmq\`)"
    apt_install rabbitmq-server
}

start_rabbitmq() {
    say "starting the local RabbitMQ (rabbitmq-server -detached)"
    require_root
    # offline: the node reads enabled_plugins when it boots
    as_root rabbitmq-plugins --offline enable rabbitmq_management >/dev/null
    as_root rabbitmq-server -detached
    say "waiting up to ${WAIT}s for $HOST:$PORT"
    wait_for port_open || die "RabbitMQ did not open $HOST:$PORT within ${WAIT}s; see /var/log/rabbitmq/"
}

enable_management() {
    say "enabling rabbitmq_management"
    # asked first, because the retries below hide their output
    can_root || needs_root "rabbitmq-plugins enable rabbitmq_management"
    # the node may still be booting right after the port opened: retry
    wait_for as_root rabbitmq-plugins enable rabbitmq_management >/dev/null 2>&1 \
        || die "rabbitmq-plugins enable rabbitmq_management failed for ${WAIT}s"
}

command -v curl >/dev/null || apt_install curl  # for the management API check

if ! port_open; then
    [[ $local_broker == 1 ]] || die "no broker answers at $HOST:$PORT (from AMQP_URI)"
    command -v rabbitmq-server >/dev/null || install_rabbitmq
    # where services start, the package has started it already
    port_open || start_rabbitmq
fi
say "AMQP port $HOST:$PORT is open"

if ! mgmt_up; then
    if [[ $local_broker == 1 ]] && command -v rabbitmq-plugins >/dev/null; then
        enable_management
    fi
    say "waiting up to ${WAIT}s for the management API on $HOST:$MGMT_PORT"
    wait_for mgmt_up \
        || die "the management API at http://$HOST:$MGMT_PORT/api/ did not answer user '$USER' within ${WAIT}s"
fi
say "management API http://$HOST:$MGMT_PORT/ answers"
