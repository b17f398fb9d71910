"""``nameko-topology dlq`` as a user runs it: a real process on a vhost of its own."""
import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import amqp
import pytest
from kombu import Connection

from nameko_topology.messages import (
    ORIGINAL_EXCHANGE_HEADER, ORIGINAL_ROUTING_KEY_HEADER, QUEUE_HEADER, REASON_HEADER,
)

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[2]
CLI = str(Path(sys.executable).with_name("nameko-topology"))
DLQ = "dead_letter_queue"


def dlq(vhost, *argv, stdin=subprocess.DEVNULL):
    """Run ``nameko-topology dlq ARGV`` on ``vhost``: (exit code, stdout, stderr)."""
    result = subprocess.run([CLI, "dlq", *argv], capture_output=True, text=True, cwd=ROOT,
                            timeout=120, stdin=stdin, env={**os.environ, "AMQP_URI": vhost.amqp_uri})
    return result.returncode, result.stdout, result.stderr


def listed(vhost, *argv):
    code, out, err = dlq(vhost, "list", "--json", *argv)
    assert code == 0, err
    return json.loads(out)


def dead_letter_headers(reason="invalid message: test", queue="order_placed_queue"):
    return {REASON_HEADER: reason, QUEUE_HEADER: queue, ORIGINAL_EXCHANGE_HEADER: "orders",
            ORIGINAL_ROUTING_KEY_HEADER: "order.placed"}


def fill(vhost, queue, bodies, headers=None):
    """Publish ``bodies`` to ``queue`` in order, persistent and confirmed."""
    with Connection(vhost.amqp_uri, transport_options={"confirm_publish": True}) as connection:
        channel = connection.channel()
        for body in bodies:
            channel.basic_publish(
                amqp.Message(body, delivery_mode=2, content_type="application/json",
                             application_headers=headers or dead_letter_headers()),
                exchange="", routing_key=queue)


def order(index):
    return json.dumps({"order_id": f"o-{index}", "item": "widget-A", "quantity": 1})


@pytest.mark.parametrize("queue_type", ["classic", "quorum"])
def test_listing_1000_dead_letters_leaves_them_all_in_their_order(vhost, queue_type):
    with Connection(vhost.amqp_uri) as connection:
        connection.default_channel.queue_declare(
            "parked", durable=True, auto_delete=False,
            arguments={"x-queue-type": queue_type})
    bodies = [order(i) for i in range(1000)]
    fill(vhost, "parked", bodies)

    records = listed(vhost, "--queue", "parked")
    again = listed(vhost, "--queue", "parked", "--limit", "10")

    assert [json.loads(r["body_preview"])["order_id"] for r in records] == [
        f"o-{i}" for i in range(1000)]
    assert [r["id"] for r in again] == [r["id"] for r in records[:10]]
    assert [m["body"].decode() for m in vhost.take_messages("parked")] == bodies


def test_list_filters_show_and_exit_codes(vhost, topology):
    fill(vhost, DLQ, [order(1)], dead_letter_headers("invalid message: no quantity"))
    fill(vhost, DLQ, [b"\xff not json"], {"x-death": [
        {"reason": "expired", "queue": "order_placed_queue", "exchange": "orders",
         "routing-keys": ["order.placed"], "count": 1}], "x-attempt": "hostile"})

    code, table, _ = dlq(vhost, "list")
    assert code == 0 and "invalid message: no quantity" in table and "expired" in table
    (expired,) = listed(vhost, "--reason", "EXPIRED")
    assert (expired["source"], expired["queue"], expired["message_type"]) == (
        "broker", "order_placed_queue", "OrderPlaced")
    code, shown, _ = dlq(vhost, "show", expired["id"])
    assert code == 0 and "x-death" in shown and "(not UTF-8; base64)" in shown
    assert dlq(vhost, "list", "--reason", "nothing like it")[0] == 1
    assert dlq(vhost, "show", "no-such-id")[0] == 1
    assert dlq(vhost, "list", "--limit", "zero")[0] == 2
    assert dlq(vhost, "replay")[0] == 2  # neither ids, --all nor --reason
    assert dlq(vhost, "list", "--queue", "no_such_queue")[0] == 1
    assert vhost.depth(DLQ) == 2


def test_a_broker_it_cannot_reach_is_exit_1_without_the_password(vhost, topology):
    code, out, err = dlq(vhost, "--amqp-uri", "amqp://guest:s3cret@127.0.0.1:1/", "list")
    assert code == 1 and "cannot reach the broker" in err
    assert "s3cret" not in out + err


def test_replay_publishes_a_fresh_copy_and_keeps_what_cannot_be_routed(vhost, topology):
    fill(vhost, DLQ, [order(1), order(2)])
    first, second = listed(vhost)

    code, out, err = dlq(vhost, "replay", first["id"], "--to-queue", "no_such_queue")
    assert code == 1 and "unroutable: NO_ROUTE" in err
    assert dlq(vhost, "replay", "--all", "--dry-run")[0] == 0
    assert vhost.depth(DLQ) == 2
    code, out, err = dlq(vhost, "replay", first["id"])

    assert code == 0, err
    assert "replayed 1, failed 0" in out
    (replayed,) = vhost.take_messages("order_placed_queue")
    assert replayed["body"].decode() == order(1)
    assert replayed["headers"] == {
        "x-replay-count": 1, ORIGINAL_EXCHANGE_HEADER: "orders",
        ORIGINAL_ROUTING_KEY_HEADER: "order.placed"}
    assert replayed["properties"]["delivery_mode"] == 2
    assert [r["id"] for r in listed(vhost)] == [second["id"]]


def test_purge_deletes_only_the_named_and_never_without_asking(vhost, topology):
    fill(vhost, DLQ, [order(i) for i in range(5)])
    ids = [r["id"] for r in listed(vhost)]

    code, _, err = dlq(vhost, "purge", ids[1], ids[3])  # no --yes, no tty
    assert code == 1 and "refusing" in err and vhost.depth(DLQ) == 5
    code, _, err = dlq(vhost, "purge", "--all")
    assert code == 1 and vhost.depth(DLQ) == 5
    code, out, _ = dlq(vhost, "purge", ids[1], ids[3], "--yes")

    assert code == 0 and "purged 2" in out
    assert [r["id"] for r in listed(vhost)] == [ids[0], ids[2], ids[4]]
    assert dlq(vhost, "purge", "gone", "--yes")[0] == 1


def test_move_parks_dead_letters_as_they_are(vhost, topology):
    with Connection(vhost.amqp_uri) as connection:
        connection.default_channel.queue_declare("parking", durable=True, auto_delete=False)
    fill(vhost, DLQ, [order(1), order(2)])
    first, second = listed(vhost)

    code, out, err = dlq(vhost, "move", first["id"], "--to-queue", "parking")

    assert code == 0, err
    assert [r["id"] for r in listed(vhost, "--queue", "parking")] == [first["id"]]
    assert [r["id"] for r in listed(vhost)] == [second["id"]]
    (parked,) = vhost.take_messages("parking")
    assert parked["headers"][REASON_HEADER] == "invalid message: test"


def test_a_replay_killed_midway_loses_nothing(vhost, topology, wait_for):
    bodies = [order(i) for i in range(300)]
    fill(vhost, DLQ, bodies)
    process = subprocess.Popen(
        [CLI, "dlq", "replay", "--all", "--rate", "150"], cwd=ROOT,
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        env={**os.environ, "AMQP_URI": vhost.amqp_uri})
    try:
        wait_for(lambda: vhost.depth("order_placed_queue") >= 60, timeout=30,
                 description="a fifth replayed")
    finally:
        process.send_signal(signal.SIGKILL)
        process.wait()

    # the broker puts back what the dead connection held: wait until nothing is unacked
    wait_for(lambda: vhost.depth(DLQ) + vhost.depth("order_placed_queue") >= 300,
             description="every message back in a queue")
    left = [m["body"].decode() for m in vhost.take_messages(DLQ)]
    replayed = [m["body"].decode() for m in vhost.take_messages("order_placed_queue")]
    assert 60 <= len(replayed) < 300
    assert set(left) | set(replayed) == set(bodies)  # never neither
    assert len(replayed) == len(set(replayed))
    assert len(set(left) & set(replayed)) <= 1  # at most the one in flight, both
    assert sorted(left, key=bodies.index) == left  # the rest kept its order
