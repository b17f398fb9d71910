"""Durability under faults: crashes, restarts, dropped broker connections, two consumers racing
on one queue, client retries. Real processes, real HTTP, a vhost (and data dir) per test.

Every test asserts exact counts: each order stored once, processed once, notified once, its
stock taken once; nothing left in a queue and nothing dead-lettered.
"""

import pytest
import requests

from tests.faults.conftest import (
    OrderStream, Pipeline, StockWatch, assert_each_order_once, assert_queues_drained,
    assert_recovered, stock_env, stream_orders,
)
from nameko_topology.testing.broker import wait_for

pytestmark = pytest.mark.faults

ITEM = "widget-A"
BIG_STOCK = 100_000

# The listing that shows how far a service has got with the stream.
PROGRESS = {"orders": "/orders", "inventory": "/processed", "notifications": "/notifications"}


@pytest.mark.parametrize("service", ["inventory", "orders", "notifications"])
def test_a_service_killed_mid_stream_loses_nothing_and_repeats_nothing(
        vhost, make_stack, service):
    stack = make_stack(stock_env({ITEM: BIG_STOCK}))
    pipeline = Pipeline(stack.url, stack)
    # paced (at most about 80 orders/s) so that the kill surely falls inside the stream
    stream = OrderStream(stack.url, 300, clients=4, pause=0.05).start()

    wait_for(lambda: pipeline.count(PROGRESS[service]) >= 100, timeout=120,
             description=f"{service} a third of the way through the stream")
    stack.kill_service(service)  # SIGKILL: no clean shutdown, unacked work in flight
    accepted_at_kill = stream.accepted
    stack.start_service(service)
    stack.wait_service_ready(service, timeout=60)
    order_ids = stream.result()

    print(f"killed {service} after {accepted_at_kill} of 300 orders were accepted; "
          f"client retries: {stream.failures}")
    assert accepted_at_kill < 300, "the stream was over before the kill"
    assert_recovered(pipeline, vhost, order_ids, ITEM, BIG_STOCK)


def test_a_full_restart_on_the_same_data_keeps_every_order_stock_and_notice(
        vhost, make_stack):
    env = stock_env({ITEM: 100, "gadget-X": 5})
    stack = make_stack(env)
    pipeline = Pipeline(stack.url, stack)
    # 10 that reserve, and 7 against a stock of 5: 5 more that reserve and 2 that fail
    stream_orders(stack.url, 10, item=ITEM)
    stream_orders(stack.url, 7, item="gadget-X")
    before = pipeline.wait_completed(17)
    assert before["/inventory"] == {ITEM: 90, "gadget-X": 0}
    statuses = [o["status"] for o in before["/orders"]]
    assert (len(statuses), statuses.count("CONFIRMED"), statuses.count("REJECTED")) == (17, 15, 2)
    kinds = [n["kind"] for n in before["/notifications"]]
    assert (len(kinds), kinds.count("confirmation"), kinds.count("failure")) == (17, 15, 2)
    assert len(set(before["/processed"])) == len(before["/processed"]) == 17
    assert_queues_drained(vhost)

    stack.stop()
    restarted = make_stack(env, data_dir=stack.data_dir)
    pipeline = Pipeline(restarted.url, restarted)
    after = pipeline.snapshot()

    assert after == before  # orders, stock (not re-seeded), processed ids, notifications
    assert_queues_drained(vhost)
    # and it carries on from there
    order_id = stream_orders(restarted.url, 1, item=ITEM)[0]
    wait_for(lambda: (pipeline.try_get(f"/orders/{order_id}") or {}).get("status")
             == "CONFIRMED", timeout=60, description="an order after the restart confirmed")
    assert pipeline.get("/inventory") == {ITEM: 89, "gadget-X": 0}


def test_broker_connections_dropped_mid_stream_are_reestablished_and_nothing_lost(
        vhost, make_stack):
    stack = make_stack(stock_env({ITEM: BIG_STOCK}))
    pipeline = Pipeline(stack.url, stack)
    # paced (about 13 orders/s) so that the drop surely falls inside the stream: rabbitmqctl
    # alone takes a few seconds to start on a busy machine
    stream = OrderStream(stack.url, 100, clients=4, pause=0.3, stack=stack).start()

    wait_for(lambda: stream.accepted >= 20, timeout=120, description="20 orders accepted")
    accepted_before = stream.accepted
    vhost.close_connections("fault test: connections dropped")
    accepted_after = stream.accepted
    order_ids = stream.result()

    print(f"connections dropped between {accepted_before} and {accepted_after} of 100 orders "
          f"accepted; client retries: {stream.failures}")
    assert accepted_after < 100, "the stream was over before the connections were dropped"
    assert_recovered(pipeline, vhost, order_ids, ITEM, BIG_STOCK)


# -- two inventory instances on PostgreSQL ---------------------------------------------------

def consumer_deliveries(vhost, queue):
    """{connection name: messages delivered to its channel} for each consumer of ``queue``
    (management statistics: they lag by up to one statistics interval)."""
    api = vhost.api
    details = api.get(api.path("queues", vhost.name, queue)).get("consumer_details", [])
    deliveries = {}
    for consumer in details:
        channel = consumer["channel_details"]
        if not channel:  # [] until the statistics hold the channel: not known yet
            return None
        stats = api.get(api.path("channels", channel["name"])).get("message_stats", {})
        deliveries[channel["connection_name"]] = stats.get("deliver", 0)
    return deliveries


def test_the_pipeline_runs_on_postgresql(vhost, postgres_db, make_stack):
    stack = make_stack({**stock_env({ITEM: 100}), "DATABASE_URL": postgres_db.url})
    pipeline = Pipeline(stack.url, stack)

    order_id = stream_orders(stack.url, 1)[0]

    snapshot = pipeline.wait_completed(1)
    assert_each_order_once(snapshot, [order_id], ITEM, 100)
    # the state really is in PostgreSQL, and no service fell back to SQLite
    assert postgres_db.query("SELECT quantity FROM inventory_stock WHERE item = %s",
                             ITEM) == [(99,)]
    assert postgres_db.query("SELECT status FROM orders_orders") == [("CONFIRMED",)]
    assert postgres_db.query("SELECT order_id FROM notifications_notifications") == [
        (order_id,)]
    assert list(stack.data_dir.glob("*.sqlite3")) == []


def test_two_inventory_instances_on_postgresql_take_each_order_once(
        vhost, postgres_db, make_stack):
    stack = make_stack({**stock_env({ITEM: 100}), "DATABASE_URL": postgres_db.url})
    pipeline = Pipeline(stack.url, stack)
    stack.start_service("inventory", instance="inventory-2")
    wait_for(lambda: vhost.consumers("order_placed_queue") == 2, timeout=60,
             description="two consumers on order_placed_queue")

    stock = StockWatch(stack.url, ITEM).start()

    stream = OrderStream(stack.url, 150, clients=16, stack=stack).start()
    # duplicates of orders already placed, straight to the exchange, racing the originals
    wait_for(lambda: stream.accepted >= 20, timeout=60, description="20 orders accepted")
    duplicated = [order_id for order_id in stream.order_ids if order_id is not None][:20]
    for order_id in duplicated:
        for _ in range(2):
            vhost.publish("orders", "order.placed",
                          {"order_id": order_id, "item": ITEM, "quantity": 1})
    order_ids = stream.result()
    snapshot = pipeline.wait_completed(150)
    stock_seen = stock.stop()

    statuses = [o["status"] for o in snapshot["/orders"]]
    assert len(statuses) == 150
    assert (statuses.count("CONFIRMED"), statuses.count("REJECTED")) == (100, 50)
    assert snapshot["/inventory"][ITEM] == 0
    assert stock_seen and min(stock_seen) >= 0, stock_seen
    processed = snapshot["/processed"]
    assert len(processed) == 150 and sorted(processed) == sorted(order_ids)
    notifications = snapshot["/notifications"]
    assert len(notifications) == 150
    assert sorted(n["order_id"] for n in notifications) == sorted(order_ids)
    kinds = [n["kind"] for n in notifications]
    assert (kinds.count("confirmation"), kinds.count("failure")) == (100, 50)
    assert postgres_db.query(
        "SELECT outcome, count(*) FROM inventory_processed GROUP BY outcome ORDER BY outcome"
    ) == [("failed", 50), ("reserved", 100)]
    # the 150 originals and the 40 duplicates were all consumed, and acked
    wait_for(lambda: vhost.acked("order_placed_queue") >= 190, timeout=30,
             description="190 deliveries acked")
    assert vhost.acked("order_placed_queue") == 190
    assert_queues_drained(vhost)
    # both instances took a share
    deliveries = wait_for(
        lambda: (d := consumer_deliveries(vhost, "order_placed_queue"))
        and len(d) == 2 and all(d.values()) and sum(d.values()) >= 190 and d,
        timeout=30, description="deliveries to both inventory consumers")
    print(f"deliveries per inventory connection: {deliveries}")
    assert sum(deliveries.values()) == 190


# -- client retries --------------------------------------------------------------------------

def test_the_same_client_order_id_twice_creates_one_order(vhost, make_stack):
    stack = make_stack(stock_env({ITEM: 100}))
    pipeline = Pipeline(stack.url, stack)
    body = {"item": ITEM, "quantity": 2, "order_id": "client-order-1"}

    first = requests.post(f"{stack.url}/order", json=body, timeout=10)
    again = requests.post(f"{stack.url}/order", json=body, timeout=10)

    assert (first.status_code, again.status_code) == (202, 202)
    assert first.json()["order_id"] == "client-order-1"
    assert again.json() == first.json()
    conflict = requests.post(f"{stack.url}/order", json={**body, "quantity": 3}, timeout=10)
    assert conflict.status_code == 409
    assert conflict.json()["field"] == "order_id"
    snapshot = pipeline.wait_completed(1)
    assert [o["order_id"] for o in snapshot["/orders"]] == ["client-order-1"]
    assert snapshot["/processed"] == ["client-order-1"]
    assert snapshot["/inventory"][ITEM] == 98
    assert [n["order_id"] for n in snapshot["/notifications"]] == ["client-order-1"]
    assert_queues_drained(vhost)
