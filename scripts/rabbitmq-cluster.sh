#!/usr/bin/env bash
# A local 3-node RabbitMQ cluster beside the default node, for the cluster tests and for trying
# the pipeline on a cluster:
#
#   scripts/rabbitmq-cluster.sh start           start the three nodes (if not running) and cluster them
#   scripts/rabbitmq-cluster.sh stop            stop them and delete their data ($CLUSTER_DIR)
#   scripts/rabbitmq-cluster.sh stop NODE       stop one node cleanly, keeping its data; `restart NODE` brings it back
#   scripts/rabbitmq-cluster.sh kill NODE       SIGKILL one node (c1, c2 or c3, or its full name)
#   scripts/rabbitmq-cluster.sh restart NODE    stop (if running) and start one node; it rejoins
#   scripts/rabbitmq-cluster.sh status          the cluster's members, running or not
#   scripts/rabbitmq-cluster.sh uri [VHOST]     the failover AMQP_URI of the three nodes
#
# Node cN is rabbit-cN@localhost on AMQP port 5672+N, management port 15672+N and Erlang
# distribution port 25672+N, with its data, logs and config under $CLUSTER_DIR/cN (default
# /tmp/nameko-topology-cluster). The default node (rabbit@localhost, 5672/15672) is never touched:
# every command names its node with -n. The nodes share the default node's Erlang cookie
# (/var/lib/rabbitmq/.erlang.cookie), which they and rabbitmqctl read because both run as the
# rabbitmq user (Debian's wrappers switch to it), whose home that is. Waits are bounded by
# CLUSTER_WAIT seconds (default 90). Needs root (or the rabbitmq user) like rabbitmq-server itself.
set -euo pipefail
source "$(dirname "$0")/lib/ensure.sh"
# Debian keeps rabbitmq-server in /usr/sbin, which is not on a normal user's PATH
export PATH="$PATH:/usr/sbin:/sbin"

CLUSTER_DIR="${CLUSTER_DIR:-/tmp/nameko-topology-cluster}"
WAIT="${CLUSTER_WAIT:-90}"
NODES=(c1 c2 c3)
FIRST=c1
CLUSTER_USER="${CLUSTER_USER:-guest}"
CLUSTER_PASSWORD="${CLUSTER_PASSWORD:-guest}"

index() { echo "${1#c}"; }
nodename() { echo "rabbit-$1@localhost"; }
amqp_port() { echo $((5672 + $(index "$1"))); }
mgmt_port() { echo $((15672 + $(index "$1"))); }
dist_port() { echo $((25672 + $(index "$1"))); }
pid_file() { echo "$CLUSTER_DIR/$1/rabbit.pid"; }

# short name (c2) of NODE given as c2 or rabbit-c2@localhost, or stop
node_arg() {
    local node="${1:?a node: c1, c2 or c3}"
    node="${node#rabbit-}"
    node="${node%@localhost}"
    case "$node" in c1 | c2 | c3) echo "$node" ;; *) die "no such node: $1 (c1, c2 or c3)" ;; esac
}

ctl() { rabbitmqctl -q -n "$(nodename "$1")" "${@:2}"; }

running() { ctl "$1" status >/dev/null 2>&1; }
# the node's app is running (not only its Erlang VM), and its management API answers
ready() {
    rabbitmq-diagnostics -q -n "$(nodename "$1")" check_running >/dev/null 2>&1 \
        && curl -sf -m 3 -u "$CLUSTER_USER:$CLUSTER_PASSWORD" -o /dev/null \
            "http://127.0.0.1:$(mgmt_port "$1")/api/overview"
}

prepare() {
    local node=$1 dir="$CLUSTER_DIR/$1"
    mkdir -p "$dir/mnesia" "$dir/log"
    cat >"$dir/rabbitmq.conf" <<EOF
listeners.tcp.default = 127.0.0.1:$(amqp_port "$node")
management.tcp.ip = 127.0.0.1
management.tcp.port = $(mgmt_port "$node")
EOF
    echo "[rabbitmq_management]." >"$dir/enabled_plugins"
    # rabbitmq-server runs as the rabbitmq user; it fails with eacces on root's directories
    chown -R rabbitmq:rabbitmq "$dir"
    chmod 755 "$CLUSTER_DIR"
}

# launch NODE: start its VM in the background unless it runs; await_node waits for it
launch() {
    local node=$1 dir="$CLUSTER_DIR/$1"
    if running "$node"; then
        say "$(nodename "$node") is running"
        return
    fi
    prepare "$node"
    say "starting $(nodename "$node") (AMQP 127.0.0.1:$(amqp_port "$node"), management $(mgmt_port "$node"))"
    rm -f "$(pid_file "$node")"
    # setsid: the node outlives this script and is not part of the caller's process group
    env RABBITMQ_NODENAME="$(nodename "$node")" \
        RABBITMQ_CONFIG_FILE="$dir/rabbitmq.conf" \
        RABBITMQ_DIST_PORT="$(dist_port "$node")" \
        RABBITMQ_MNESIA_BASE="$dir/mnesia" \
        RABBITMQ_LOG_BASE="$dir/log" \
        RABBITMQ_PID_FILE="$(pid_file "$node")" \
        RABBITMQ_ENABLED_PLUGINS_FILE="$dir/enabled_plugins" \
        setsid rabbitmq-server >"$dir/log/stdout.log" 2>&1 </dev/null &
}

await_node() {
    local node=$1 dir="$CLUSTER_DIR/$1"
    # `rabbitmqctl wait` waits for the pid file, then for the app to boot
    rabbitmqctl -q -n "$(nodename "$node")" wait "$(pid_file "$node")" --timeout "$WAIT" >/dev/null \
        || die "$(nodename "$node") did not start within ${WAIT}s; see $dir/log/"
    wait_for ready "$node" || die "$(nodename "$node") management API did not answer within ${WAIT}s"
}

start_node() { launch "$1"; await_node "$1"; }

# member NODE: NODE's cluster includes the first node
member() {
    ctl "$1" cluster_status --formatter json 2>/dev/null \
        | python3 -c 'import json, sys; sys.exit(sys.argv[1] not in json.load(sys.stdin)["disk_nodes"])' \
            "$(nodename "$FIRST")"
}

join() {
    local node=$1
    member "$node" && return
    say "joining $(nodename "$node") to $(nodename "$FIRST")"
    ctl "$node" stop_app
    ctl "$node" join_cluster "$(nodename "$FIRST")"
    ctl "$node" start_app
    wait_for ready "$node" || die "$(nodename "$node") did not come back after joining within ${WAIT}s"
}

cmd_start() {
    [[ -r /var/lib/rabbitmq/.erlang.cookie ]] || die "no /var/lib/rabbitmq/.erlang.cookie (is rabbitmq-server installed? \`make broker\`)"
    mkdir -p "$CLUSTER_DIR"
    local node
    # the three boot at once: a node's boot is mostly waiting
    for node in "${NODES[@]}"; do launch "$node"; done
    for node in "${NODES[@]}"; do await_node "$node"; done
    for node in "${NODES[@]}"; do [[ $node == "$FIRST" ]] || join "$node"; done
    cmd_status
}

stop_node() {
    local node=$1
    running "$node" || return 0
    say "stopping $(nodename "$node")"
    ctl "$node" stop "$(pid_file "$node")" >/dev/null 2>&1 || kill_node "$node"
}

kill_node() {
    local node=$1 pid
    pid="$(cat "$(pid_file "$node")" 2>/dev/null)" || die "$(nodename "$node") has no pid file"
    say "SIGKILL $(nodename "$node") (pid $pid)"
    kill -KILL "$pid" 2>/dev/null || true
    # the node is gone when its VM no longer answers
    wait_for bash -c "! kill -0 $pid 2>/dev/null" || die "pid $pid still alive"
}

cmd_stop() {
    local node
    for node in "${NODES[@]}"; do stop_node "$node"; done
    rm -rf "$CLUSTER_DIR"
    say "stopped; $CLUSTER_DIR removed"
}

cmd_restart() {
    local node
    node="$(node_arg "${1:-}")"
    stop_node "$node"
    start_node "$node"
    say "$(nodename "$node") is back"
}

cmd_status() {
    local node
    for node in "${NODES[@]}"; do
        if running "$node"; then
            ctl "$node" cluster_status --formatter json \
                | python3 -c 'import json, sys; s = json.load(sys.stdin); print(" ".join(sorted(s["running_nodes"])))' \
                | sed "s/^/$ME: running nodes: /"
            return
        fi
    done
    say "no cluster node is running"
    return 1
}

cmd_uri() {
    local vhost="${1:-}" node uris=()
    for node in "${NODES[@]}"; do
        uris+=("amqp://$CLUSTER_USER:$CLUSTER_PASSWORD@127.0.0.1:$(amqp_port "$node")/$vhost")
    done
    (IFS=';'; echo "${uris[*]}")
}

case "${1:-}" in
    start) cmd_start ;;
    stop) if [[ -n "${2:-}" ]]; then stop_node "$(node_arg "$2")"; else cmd_stop; fi ;;
    kill) kill_node "$(node_arg "${2:-}")" ;;
    restart) cmd_restart "${2:-}" ;;
    status) cmd_status ;;
    uri) cmd_uri "${2:-}" ;;
    *) echo "usage: $0 start|stop [NODE]|kill NODE|restart NODE|status|uri [VHOST]" >&2; exit 2 ;;
esac
