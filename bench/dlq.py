"""The dead-letter tools at scale: ``python -m bench.dlq -n 100000 --replay 5000``.

In a broker vhost of its own (deleted afterwards), on the pipeline's topology:

- ``list``: ``dead_letter_queue`` is filled with N dead letters as the framework writes them
  (each with its record headers); then ``nameko-topology dlq list --limit 100`` runs as a
  command, ``--repeat`` times, and its wall time (process start included) is reported. The
  queue must hold N messages afterwards.
- ``replay``: the queue is emptied and filled with R dead letters; ``DeadLetters.replay`` of
  all of them (one persistent, mandatory, confirmed publish each, then the ack) is timed, and
  replayed messages per second reported. Every one must then be in ``order_placed_queue``
  (nobody consumes it) and none left in the DLQ.

Prints a table and one JSON line.
"""
import argparse
import json
import os
import statistics
import subprocess
import sys
import time
import uuid
from pathlib import Path

from kombu import Connection, Exchange, Producer

from bench.load import DEFAULT_AMQP_URI
from nameko_topology.declarer import declare_topology
from nameko_topology.dlq.operations import DeadLetters, Selection
from nameko_topology.messages import (
    ATTEMPT_HEADER, DEAD_LETTER_ID_HEADER, ORIGINAL_EXCHANGE_HEADER, ORIGINAL_ROUTING_KEY_HEADER,
    QUEUE_HEADER, REASON_HEADER,
)
from nameko_topology.model import load_topology
from nameko_topology.testing.broker import TestVhost, wait_for

REPO_ROOT = Path(__file__).resolve().parents[1]
TOPOLOGY_FILE = REPO_ROOT / "topology.yaml"
DLQ = "dead_letter_queue"


def fill(amqp_uri, count):
    """Publish ``count`` framework-style dead letters to the dead-letter exchange."""
    with Connection(amqp_uri) as connection:
        producer = Producer(connection.channel(), exchange=Exchange("dlx_exchange", "topic"))
        for number in range(count):
            order_id = f"bench-{number}"
            producer.publish(
                json.dumps({"order_id": order_id, "item": "widget-A", "quantity": 1}),
                routing_key="order.placed", content_type="application/json",
                delivery_mode=2, message_id=order_id, headers={
                    DEAD_LETTER_ID_HEADER: uuid.uuid4().hex,
                    REASON_HEADER: "handler failed 3 times, last: RuntimeError: bench",
                    QUEUE_HEADER: "order_placed_queue", ATTEMPT_HEADER: 3,
                    ORIGINAL_EXCHANGE_HEADER: "orders",
                    ORIGINAL_ROUTING_KEY_HEADER: "order.placed",
                })


def time_list(vhost, repeat):
    """Wall seconds of each ``dlq list --limit 100`` command."""
    command = [sys.executable, "-m", "nameko_topology.cli", "dlq", "--amqp-uri", vhost.amqp_uri,
               "--file", str(TOPOLOGY_FILE), "list", "--limit", "100", "--json"]
    times = []
    for _ in range(repeat):
        started = time.monotonic()
        result = subprocess.run(command, capture_output=True, text=True, env=os.environ.copy())
        times.append(time.monotonic() - started)
        if result.returncode != 0 or len(json.loads(result.stdout)) != 100:
            raise SystemExit(f"dlq list failed ({result.returncode}): {result.stderr[-500:]}")
    return times


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("-n", type=int, default=100_000, help="dead letters for the list run")
    parser.add_argument("--replay", type=int, default=5_000, help="dead letters to replay")
    parser.add_argument("--repeat", type=int, default=5, help="list commands to time")
    parser.add_argument("--amqp-uri", default=os.environ.get("AMQP_URI", DEFAULT_AMQP_URI))
    args = parser.parse_args(argv)

    vhost = TestVhost(args.amqp_uri, prefix="nt_bench_dlq").create()
    try:
        topology = load_topology(TOPOLOGY_FILE)
        with Connection(vhost.amqp_uri) as connection:
            declare_topology(connection, topology)

        fill(vhost.amqp_uri, args.n)
        wait_for(lambda: vhost.depth(DLQ) == args.n, timeout=300, description=f"{args.n} in DLQ")
        list_times = time_list(vhost, args.repeat)
        kept = vhost.depth(DLQ)
        if kept != args.n:
            raise SystemExit(f"MISMATCH: the DLQ holds {kept} after listing, not {args.n}")

        with Connection(vhost.amqp_uri) as connection:
            connection.default_channel.queue_purge(DLQ)
        fill(vhost.amqp_uri, args.replay)
        wait_for(lambda: vhost.depth(DLQ) == args.replay, timeout=300,
                 description=f"{args.replay} in DLQ")
        started = time.monotonic()
        outcome = DeadLetters(vhost.amqp_uri, topology).replay(Selection(all=True))
        replay_seconds = time.monotonic() - started
        replayed = len(outcome["replayed"])
        if (replayed, vhost.depth(DLQ), vhost.depth("order_placed_queue")) != (
                args.replay, 0, args.replay):
            raise SystemExit(f"MISMATCH: replayed {replayed}, DLQ {vhost.depth(DLQ)}, "
                             f"order_placed_queue {vhost.depth('order_placed_queue')}")
    finally:
        vhost.delete()

    result = {
        "dlq_messages": args.n,
        "list_limit_100_s_median": round(statistics.median(list_times), 3),
        "list_limit_100_s_max": round(max(list_times), 3),
        "replayed": replayed,
        "replay_s": round(replay_seconds, 2),
        "replay_per_s": round(replayed / replay_seconds, 1),
    }
    print(f"dlq list --limit 100 on {args.n} dead letters: median "
          f"{result['list_limit_100_s_median']} s, max {result['list_limit_100_s_max']} s "
          f"({args.repeat} runs, process start included); the queue kept {kept}")
    print(f"replay of {replayed}: {result['replay_s']} s, {result['replay_per_s']} messages/s")
    print(json.dumps(result))


if __name__ == "__main__":
    main()
