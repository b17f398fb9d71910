"""A broker node of the 3-node cluster dies or is stopped while orders stream in: every process
fails over to a surviving node, and every order completes exactly once.

Real processes (scripts.stack.Stack) on topology.quorum.yaml with quorum RPC queues, on the
local cluster of scripts/rabbitmq-cluster.sh (tests/cluster/conftest.py).
"""
from collections import Counter

import pytest

from nameko_topology.testing.broker import wait_for
from scripts.stack import GATEWAY, SERVICES
from tests.cluster.conftest import (
    NODES, RPC_QUEUES, node_name, start_placed, wait_consumers)
from tests.faults.conftest import (
    PIPELINE_QUEUES, OrderStream, Pipeline, assert_each_order_once, assert_queues_drained,
    stock_env)

pytestmark = pytest.mark.cluster

ITEM = "widget-A"
BIG_STOCK = 100_000
def connections_by_node(cluster, vhost):
    """How many of the vhost's connections each node holds (management statistics)."""
    api = cluster.api()
    return Counter(c["node"] for c in api.get(api.path("vhosts", vhost.name, "connections")))


def quorum_members(vhost):
    """{queue: (members, online)} of every quorum queue in the vhost."""
    return {name: (sorted(q.get("members", [])), sorted(q.get("online", [])))
            for name, q in vhost.queues().items() if q.get("type") == "quorum"}


def test_a_node_killed_mid_stream_every_process_fails_over_and_nothing_is_lost(
        cluster, cluster_vhost, cluster_stack):
    vhost, stack = cluster_vhost, cluster_stack
    stack.env.update(stock_env({ITEM: BIG_STOCK}))
    # every process tries c1 first: the node most of them are on, the one that dies
    start_placed(stack, cluster, vhost, {name: (name, "c1") for name in SERVICES + (GATEWAY,)})
    pipeline = Pipeline(stack.url, stack)
    queues = quorum_members(vhost)
    assert set(PIPELINE_QUEUES) | set(RPC_QUEUES) <= set(queues), sorted(queues)

    # read before the stream: the listing lags by a statistics interval, the kill must not
    by_node = wait_for(lambda: connections_by_node(cluster, vhost), timeout=30,
                       description="the vhost's connections listed")
    victim = max(NODES, key=lambda node: by_node[node_name(node)])
    assert by_node[node_name(victim)] > sum(by_node.values()) / 2, by_node

    stream = OrderStream(stack.url, 300, clients=4, pause=0.05, stack=stack).start()
    wait_for(lambda: stream.accepted >= 100, timeout=120, description="100 orders accepted")
    cluster.kill(victim)
    accepted_at_kill = stream.accepted

    order_ids = stream.result()
    snapshot = pipeline.wait_completed(300, timeout=120)
    print(f"killed {victim} after {accepted_at_kill} of 300 orders; connections before: "
          f"{dict(by_node)}; refused POSTs retried: {stream.failures}")
    assert accepted_at_kill < 300, "the stream was over before the node died"
    # a refused POST was a 503, and its retry with the same key got the 202 (result())
    assert set(stream.failures) <= {503}, stream.failures
    assert_each_order_once(snapshot, order_ids, ITEM, BIG_STOCK)
    assert_queues_drained(vhost)
    after = wait_for(lambda: (c := connections_by_node(cluster, vhost))
                     and node_name(victim) not in c and c, timeout=30,
                     description=f"no connection listed on {victim}")
    print(f"connections after the failover: {dict(after)}")

    cluster.restart(victim)
    everyone = sorted(node_name(node) for node in NODES)
    wait_for(lambda: all(members == online == everyone
                         for members, online in quorum_members(vhost).values()),
             timeout=60, description="every quorum queue with three members online")
    assert set(quorum_members(vhost)) == set(queues)
    # one consumer per queue: a quorum queue keeps the dead node's consumers (suspected down,
    # their messages returned) until that node is back to confirm they are gone
    wait_consumers(vhost, PIPELINE_QUEUES + RPC_QUEUES, timeout=60)


def test_a_node_stopped_for_good_the_pipeline_goes_on_on_two_nodes(
        cluster, cluster_vhost, cluster_stack):
    vhost, stack = cluster_vhost, cluster_stack
    stack.env.update(stock_env({ITEM: BIG_STOCK}))
    # spread over the three nodes; c2, which goes, holds the gateway and inventory
    start_placed(stack, cluster, vhost, {"orders": ("orders", "c1"),
                                         "inventory": ("inventory", "c2"),
                                         "notifications": ("notifications", "c3"),
                                         GATEWAY: (GATEWAY, "c2")})
    pipeline = Pipeline(stack.url, stack)
    before = OrderStream(stack.url, 50, clients=4, stack=stack).start().result()
    pipeline.wait_completed(50)

    cluster.stop("c2")
    assert cluster.running_nodes() == {"c1", "c3"}
    # placed after the stop: every one completes on the two nodes left
    after = OrderStream(stack.url, 100, clients=4, stack=stack).start().result()
    snapshot = pipeline.wait_completed(150, timeout=120)

    assert_each_order_once(snapshot, before + after, ITEM, BIG_STOCK)
    wait_consumers(vhost, PIPELINE_QUEUES + RPC_QUEUES, timeout=60)
    assert_queues_drained(vhost)
    assert cluster.running_nodes() == {"c1", "c3"}
