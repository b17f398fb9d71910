"""Two instances of every service and two gateways, on PostgreSQL and the 3-node cluster: many
concurrent orders for too little stock are each settled once, and never oversold."""
import pytest

from scripts.stack import GATEWAY, SERVICES
from tests.cluster.conftest import RPC_QUEUES, start_placed, wait_consumers
from tests.faults.conftest import (
    PIPELINE_QUEUES, OrderStream, Pipeline, StockWatch, assert_queues_drained, stock_env)

pytestmark = pytest.mark.cluster

ITEM = "widget-A"
STOCK = 200
ORDERS = 300


def test_two_instances_of_everything_reserve_exactly_the_stock_there_is(
        cluster, cluster_vhost, cluster_stack, postgres_db):
    vhost, stack = cluster_vhost, cluster_stack
    stack.env.update({**stock_env({ITEM: STOCK}), "DATABASE_URL": postgres_db.url})
    # the first instance of each on c1, the second on c2; the gateways on c3 and c1
    placement = {}
    for service in SERVICES:
        placement[service] = (service, "c1")
        placement[f"{service}-2"] = (service, "c2")
    placement[GATEWAY] = (GATEWAY, "c3")
    placement["gateway-2"] = (GATEWAY, "c1")
    start_placed(stack, cluster, vhost, placement)
    wait_consumers(vhost, PIPELINE_QUEUES + RPC_QUEUES, each=2, timeout=60)
    pipeline = Pipeline(stack.url, stack)

    stock = StockWatch(stack.url_of("gateway-2"), ITEM).start()

    # all at once, half through each gateway
    streams = [OrderStream(stack.url_of(gateway), ORDERS // 2, clients=8, stack=stack).start()
               for gateway in (GATEWAY, "gateway-2")]
    order_ids = [order_id for stream in streams for order_id in stream.result()]
    snapshot = pipeline.wait_completed(ORDERS, timeout=120)
    stock_seen = stock.stop()

    assert len(set(order_ids)) == ORDERS
    orders = snapshot["/orders"]
    assert sorted(o["order_id"] for o in orders) == sorted(order_ids)
    statuses = [o["status"] for o in orders]
    assert (statuses.count("CONFIRMED"), statuses.count("REJECTED")) == (STOCK, ORDERS - STOCK)
    assert snapshot["/inventory"][ITEM] == 0
    assert stock_seen and min(stock_seen) >= 0, stock_seen
    assert sorted(snapshot["/processed"]) == sorted(order_ids)
    notifications = snapshot["/notifications"]
    assert sorted(n["order_id"] for n in notifications) == sorted(order_ids)
    kinds = [n["kind"] for n in notifications]
    assert (kinds.count("confirmation"), kinds.count("failure")) == (STOCK, ORDERS - STOCK)
    assert postgres_db.query(
        "SELECT outcome, count(*) FROM inventory_processed GROUP BY outcome ORDER BY outcome"
    ) == [("failed", ORDERS - STOCK), ("reserved", STOCK)]
    assert_queues_drained(vhost)
