"""nameko_topology.metrics: the recorders, the outbox gauges, the process's one metrics server,
and the counts that @handle, @rpc and the outbox relay record on the real broker."""
import socket
import time
import urllib.request
from types import SimpleNamespace

import pytest
from nameko.standalone.rpc import ClusterRpcProxy
from prometheus_client.parser import text_string_to_metric_families
from sqlalchemy import MetaData

from nameko_topology import Database, Outbox, PermanentError, handle, rpc
from nameko_topology import metrics
from nameko_topology.outbox import outbox_table

VALID_ORDER = {"order_id": "m-1", "item": "widget-A", "quantity": 1}
_http = urllib.request.build_opener(urllib.request.ProxyHandler({}))


def value(name, **labels):
    return metrics.REGISTRY.get_sample_value(name, labels) or 0.0


def scrape(port):
    with _http.open(f"http://127.0.0.1:{port}/metrics", timeout=5) as response:
        text = response.read().decode()
    return {sample.name: sample for family in text_string_to_metric_families(text)
            for sample in family.samples}, text


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


# -- the recorders ------------------------------------------------------------------------------

class Worker:
    """Stands for a WorkerContext: hashable."""


def test_queue_metrics_count_outcomes_and_time_one_run_per_worker():
    queue = metrics.QueueMetrics("unit", "q1")
    before = value("nameko_topology_handler_seconds_count", service="unit", queue="q1")
    queue.acked.inc(3)
    queue.retried.inc()
    queue.dead_lettered.inc()
    worker = Worker()
    queue.started(worker)
    queue.finished(worker)
    queue.finished(worker)  # a second report of the same worker is not a second run
    assert value("nameko_topology_messages_total", service="unit", queue="q1",
                 outcome="acked") == 3
    assert value("nameko_topology_messages_total", service="unit", queue="q1",
                 outcome="retried") == 1
    assert value("nameko_topology_messages_total", service="unit", queue="q1",
                 outcome="dead_lettered") == 1
    assert value("nameko_topology_handler_seconds_count", service="unit",
                 queue="q1") == before + 1


def test_rpc_metrics_forget_a_dropped_call():
    method = metrics.RpcMetrics("unit", "m1")
    method.started("request-1")
    method.dropped("request-1")
    method.finished("request-1")
    method.started("request-2")
    method.finished("request-2")
    assert value("nameko_topology_rpc_seconds_count", service="unit", method="m1") == 1


def test_published_counts_each_confirmed_message_by_type():
    published = metrics.PublishedMetrics("unit")
    published.confirmed(["A", "B", "A"])
    assert value("nameko_topology_published_total", service="unit", message="A") == 2
    assert value("nameko_topology_published_total", service="unit", message="B") == 1


def test_outbox_gauges_read_the_table_at_scrape_time(sqlite_database):
    table = outbox_table(MetaData(), "unit_outbox_svc")
    sqlite_database.create(table.metadata)
    metrics.watch_outbox("unit_outbox_svc", sqlite_database, table)
    try:
        assert value("nameko_topology_outbox_pending", service="unit_outbox_svc") == 0
        assert value("nameko_topology_outbox_oldest_seconds", service="unit_outbox_svc") == 0
        with sqlite_database.transaction() as connection:
            for number, created_at in enumerate((time.time() - 60, time.time())):
                connection.execute(table.insert().values(
                    message_id=f"m{number}", message_type="OrderPlaced", exchange="orders",
                    routing_key="order.placed", correlation_id="c", body="{}",
                    created_at=created_at, attempts=0))
        assert value("nameko_topology_outbox_pending", service="unit_outbox_svc") == 2
        assert 60 <= value("nameko_topology_outbox_oldest_seconds",
                           service="unit_outbox_svc") < 120
    finally:
        metrics.unwatch_outbox("unit_outbox_svc")
    assert metrics.REGISTRY.get_sample_value("nameko_topology_outbox_pending",
                                             {"service": "unit_outbox_svc"}) is None


def test_an_unreadable_outbox_leaves_its_gauges_out_and_the_scrape_answers(sqlite_database):
    table = outbox_table(MetaData(), "never_created")  # no such table in the database
    metrics.watch_outbox("never_created", sqlite_database, table)
    try:
        assert metrics.REGISTRY.get_sample_value("nameko_topology_outbox_pending",
                                                 {"service": "never_created"}) is None
        assert metrics.REGISTRY.get_sample_value("process_cpu_seconds_total") is not None
    finally:
        metrics.unwatch_outbox("never_created")


# -- the server ---------------------------------------------------------------------------------

def server_extension(port):
    extension = metrics.MetricsServer()
    extension.container = SimpleNamespace(config={"METRICS_PORT": port})
    extension.setup()
    return extension


def test_one_server_per_process_stopped_with_its_last_user():
    port = free_port()
    first, second = server_extension(port), server_extension(port)
    first.start()
    second.start()
    try:
        assert metrics.serving_port() == port
        samples, _ = scrape(port)
        assert "process_cpu_seconds_total" in samples
        first.stop()
        assert scrape(port)[0]  # the second container still uses it
    finally:
        first.stop()
        second.stop()
    assert metrics.serving_port() is None
    with pytest.raises(OSError):
        scrape(port)


def test_no_port_no_server():
    extension = server_extension(None)
    extension.start()
    assert metrics.serving_port() is None
    extension.stop()


def test_a_taken_port_fails_start_up_naming_the_key_and_port():
    with socket.socket() as taken:
        taken.bind(("0.0.0.0", 0))
        taken.listen()
        port = taken.getsockname()[1]
        extension = server_extension(port)
        with pytest.raises(OSError, match=f"METRICS_PORT.*port {port}"):
            extension.start()
    assert metrics.serving_port() is None


# -- recorded by the framework, against the real broker ----------------------------------------

failed_once = set()  # the order ids of "flaky" orders whose first attempt has failed


class Counted:
    name = "counted"
    db = Database(MetaData())
    outbox = Outbox("db")

    @handle("order_placed_queue")
    def on_order_placed(self, order):
        if order["item"] == "explode-permanently":
            raise PermanentError("never")
        if order["item"] == "flaky" and order["order_id"] not in failed_once:
            failed_once.add(order["order_id"])
            raise RuntimeError("transient")  # retried; the second attempt is acked

    @rpc
    def stage(self, count):
        with self.db.transaction() as connection:
            self.outbox.add_many(connection, "InventoryReserved", [
                {"order_id": f"s-{number}", "item": "widget-A", "quantity": 1}
                for number in range(count)])
        return count


@pytest.mark.integration
def test_handle_rpc_and_relay_record_into_the_served_registry(
        run_services, publish, publish_raw, rabbit_vhost, wait_for):
    port = free_port()
    labels = {"service": "counted", "queue": "order_placed_queue"}
    acked = value("nameko_topology_messages_total", outcome="acked", **labels)
    dead = value("nameko_topology_messages_total", outcome="dead_lettered", **labels)
    retried = value("nameko_topology_messages_total", outcome="retried", **labels)
    runs = value("nameko_topology_handler_seconds_count", **labels)
    run_services(Counted, config={"METRICS_PORT": port})

    for number in range(3):
        publish("OrderPlaced", {**VALID_ORDER, "order_id": f"m-{number}"})
    publish("OrderPlaced", {**VALID_ORDER, "item": "explode-permanently"})
    publish("OrderPlaced", {**VALID_ORDER, "order_id": "m-flaky", "item": "flaky"})
    publish_raw("orders", "order.placed", b"not json")

    def served(name, **sample_labels):
        for family in text_string_to_metric_families(scrape(port)[1]):
            for sample in family.samples:
                if sample.name == name and sample.labels == sample_labels:
                    return sample.value
        return 0.0

    wait_for(lambda: served("nameko_topology_messages_total", outcome="acked",
                            **labels) - acked == 4, timeout=30, description="4 acked")
    wait_for(lambda: served("nameko_topology_messages_total", outcome="dead_lettered",
                            **labels) - dead == 2, timeout=30, description="2 dead-lettered")
    assert served("nameko_topology_messages_total", outcome="retried", **labels) - retried == 1
    # one run per attempt that reached the handler (the flaky one twice); the malformed
    # message never did
    assert served("nameko_topology_handler_seconds_count", **labels) - runs == 6

    published = value("nameko_topology_published_total", service="counted",
                      message="InventoryReserved")
    with ClusterRpcProxy({"AMQP_URI": rabbit_vhost.amqp_uri}) as proxy:
        assert proxy.counted.stage(4) == 4
    wait_for(lambda: served("nameko_topology_published_total", service="counted",
                            message="InventoryReserved") - published == 4,
             timeout=30, description="4 published")
    wait_for(lambda: served("nameko_topology_outbox_pending", service="counted") == 0,
             timeout=30, description="the outbox empty")
    assert served("nameko_topology_rpc_seconds_count", service="counted", method="stage") >= 1
