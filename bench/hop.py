"""The price of one message hop on this stack: ``python -m bench.hop -n 20000``.

Where ``bench.load`` measures the whole pipeline, this isolates its unit of work: one nameko
service process consuming one message (or answering one RPC call) and doing nothing else
(services in ``bench/hop_services.py``). What such a process spends in CPU per message is the
floor under every hop of the pipeline, whatever the handlers do.

- ``handle``: N valid InventoryReserved messages are published (persistent, confirmed) to
  ``inventory_reserved_queue`` first; then the service starts and drains them through
  ``@handle`` (decode, validate, worker, ack).
- ``inbox``: the same, with one SQLite transaction per message (``insert_once``), as the
  notifications service has.
- ``rpc``: C threads call a no-op ``@rpc`` method N times through the gateway's RPC client.

The CPU counted is the service process's, from the moment its consumer is attached (start-up
excluded) until the queue is drained (for ``handle``/``inbox``: no ready messages left; at most
``PREFETCH_COUNT`` may still be in flight then) or the last call returned. Each variant runs in a
broker vhost of its own, deleted afterwards. Prints a table and one JSON line per variant.
"""
import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from kombu import Connection

from bench.load import DEFAULT_AMQP_URI, cpu_seconds
from gateway.rpc import RpcClient
from scripts.stack import REPO_ROOT
from nameko_topology.batch import BatchPublisher
from nameko_topology.declarer import declare_topology
from nameko_topology.testing.broker import create_vhost, delete_vhost, wait_for
from nameko_topology.model import load_topology

VARIANTS = {"handle": "NoopHandler", "inbox": "InboxHandler", "rpc": "NoopRpc"}
HOP_QUEUE = "inventory_reserved_queue"
PUBLISH_BATCH = 1000


def publish_events(amqp_uri, topology, n):
    spec = topology.message("InventoryReserved")
    publisher = BatchPublisher(amqp_uri)
    try:
        for start in range(0, n, PUBLISH_BATCH):
            batch = [{
                "exchange": spec.exchange, "routing_key": spec.routing_key,
                "body": json.dumps({"order_id": f"hop-{i}", "item": "widget-A", "quantity": 1,
                                    "remaining": 1}),
                "message_id": uuid.uuid4().hex, "correlation_id": "bench-hop",
                "type": spec.name} for i in range(start, min(start + PUBLISH_BATCH, n))]
            outcome = publisher.publish(batch)
            if len(outcome.confirmed) != len(batch):
                raise RuntimeError(f"only {len(outcome.confirmed)} of {len(batch)} confirmed")
    finally:
        publisher.close()


def start_service(variant, amqp_uri, work_dir):
    env = dict(os.environ, AMQP_URI=amqp_uri, DATA_DIR=str(work_dir), PYTHONUNBUFFERED="1")
    log = open(Path(work_dir) / f"{variant}.log", "wb")
    return subprocess.Popen(
        [sys.executable, "-m", "nameko", "run", "--config", str(REPO_ROOT / "config.yaml"),
         f"bench.hop_services:{VARIANTS[variant]}"],
        cwd=REPO_ROOT, env=env, stdout=log, stderr=subprocess.STDOUT)


def passive_depth(amqp_uri, queue):
    with Connection(amqp_uri) as connection:
        return connection.default_channel.queue_declare(queue, passive=True).message_count


def run_variant(variant, base_uri, n, concurrency, work_dir):
    vhost = f"nt_hop_{uuid.uuid4().hex[:10]}"
    amqp_uri = create_vhost(base_uri, vhost)
    service = None
    try:
        topology = load_topology(REPO_ROOT / "topology.yaml")
        with Connection(amqp_uri) as connection:
            declare_topology(connection, topology)
        if variant != "rpc":
            publish_events(amqp_uri, topology, n)
        service = start_service(variant, amqp_uri, work_dir)
        if variant == "rpc":
            client = RpcClient(amqp_uri, timeout=30)
            wait_for(lambda: _answers(client), 60, description="the service to answer")
            began, cpu_began = time.perf_counter(), cpu_seconds([service.pid])
            with ThreadPoolExecutor(concurrency) as pool:
                list(pool.map(lambda _: client.call("hop_rpc", "ping"), range(n)))
            elapsed, cpu = time.perf_counter() - began, cpu_seconds([service.pid]) - cpu_began
            client.close()
        else:
            # the depth first drops once the consumer is attached and fetching
            wait_for(lambda: passive_depth(amqp_uri, HOP_QUEUE) < n, 60, description="the consumer")
            began, cpu_began = time.perf_counter(), cpu_seconds([service.pid])
            wait_for(lambda: passive_depth(amqp_uri, HOP_QUEUE) == 0, 600, interval=0.02,
                     description="the drain")
            elapsed, cpu = time.perf_counter() - began, cpu_seconds([service.pid]) - cpu_began
        return {"kind": "hop", "variant": variant, "messages": n,
                "concurrency": concurrency if variant == "rpc" else None,
                "elapsed_s": round(elapsed, 3), "per_s": round(n / elapsed, 1),
                "service_cpu_s": round(cpu, 2), "cpu_ms_per_message": round(1000 * cpu / n, 3),
                "max_workers": os.environ.get("MAX_WORKERS", "10 (config.yaml)"),
                "prefetch": os.environ.get("PREFETCH_COUNT", "20 (config.yaml)")}
    finally:
        if service is not None:
            service.terminate()
            try:
                service.wait(15)
            except subprocess.TimeoutExpired:
                service.kill()
        delete_vhost(amqp_uri)


def _answers(client):
    try:
        client.call("hop_rpc", "ping", timeout=2)
    except Exception:
        return False
    return True


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("-n", "--messages", type=int, default=20000, help="messages per variant")
    ap.add_argument("-c", "--concurrency", type=int, default=32, help="RPC caller threads")
    ap.add_argument("variants", nargs="*", metavar="VARIANT",
                    help=f"which hops to measure: {', '.join(VARIANTS)} (default: all)")
    ap.add_argument("--amqp-uri", default=os.environ.get("AMQP_URI") or DEFAULT_AMQP_URI)
    args = ap.parse_args(argv)
    unknown = set(args.variants) - VARIANTS.keys()
    if unknown:
        ap.error(f"unknown variant(s): {', '.join(sorted(unknown))}")
    results = []
    with tempfile.TemporaryDirectory(prefix="nt-hop-") as work_dir:
        for variant in args.variants or VARIANTS:
            print(f"[hop] {variant}: {args.messages} messages", file=sys.stderr, flush=True)
            results.append(run_variant(variant, args.amqp_uri, args.messages,
                                       args.concurrency, work_dir))
    print(f"{'hop':8} {'messages':>9} {'msgs/s':>9} {'cpu s':>7} {'cpu ms/msg':>11}")
    for r in results:
        print(f"{r['variant']:8} {r['messages']:>9} {r['per_s']:>9} {r['service_cpu_s']:>7} "
              f"{r['cpu_ms_per_message']:>11}")
    for r in results:
        print(json.dumps(r))


if __name__ == "__main__":
    main()
