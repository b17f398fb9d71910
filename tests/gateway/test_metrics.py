"""GET /metrics of the gateway (gateway/metrics.py) against a fake RPC client and a fake
management API: request counts by URL rule, RPC outcomes, order batch sizes, queue depths."""
import pytest
from prometheus_client.parser import text_string_to_metric_families

from gateway.app import create_app
from gateway.metrics import QueueDepthCollector, outcome_of
from gateway.rpc import RemoteError, RpcClient, RpcTimeout, ServiceUnavailable
from nameko_topology.management import ManagementError
from tests.gateway.test_app import ORDER, FakeRpc


class DepthManagement:
    """Answers ``vhost_entities("queues")`` with fixed depths, or raises; counts its reads."""

    def __init__(self, queues=None, error=None):
        self.queues, self.error, self.reads = queues or {}, error, 0

    def vhost_entities(self, kind):
        assert kind == "queues"
        self.reads += 1
        if self.error:
            raise self.error
        return [{"name": name, "messages_ready": ready, "messages_unacknowledged": unacked,
                 "consumers": consumers}
                for name, (ready, unacked, consumers) in self.queues.items()]


@pytest.fixture
def app():
    app = create_app({"AMQP_URI": "amqp://unused"},
                     rpc=FakeRpc({("orders", "place_order"): ORDER}))
    app.extensions["management"] = DepthManagement({"order_placed_queue": (7, 2, 1),
                                                    "not_in_the_topology": (1, 1, 1)})
    return app


def samples(client):
    response = client.get("/metrics")
    assert response.status_code == 200
    assert response.content_type.startswith("text/plain")
    return [sample for family in text_string_to_metric_families(response.get_data(as_text=True))
            for sample in family.samples]


def value(client, name, **labels):
    found = [s.value for s in samples(client) if s.name == name and s.labels == labels]
    return found[0] if found else None


def test_requests_are_counted_by_url_rule_and_unmatched_paths_share_one_label(app):
    client = app.test_client()
    for order_id in ("a", "b", "c"):
        client.get(f"/orders/{order_id}")  # the fake answers None: 404s of one rule
    client.get("/no/such/path")
    client.get("/another/unknown")
    client.open("/inventory", method="BREW")  # any token is a method to werkzeug
    assert value(client, "http_requests_total", method="GET", route="/orders/<order_id>",
                 status="404") == 3
    assert value(client, "http_requests_total", method="GET", route="<unmatched>",
                 status="404") == 2
    assert value(client, "http_requests_total", method="other", route="<unmatched>",
                 status="405") == 1
    assert value(client, "http_request_duration_seconds_count", route="/orders/<order_id>") == 3
    assert not [s for s in samples(client) if s.labels.get("route", "").startswith("/orders/a")]


def test_placed_orders_count_202s_and_batch_sizes(app):
    client = app.test_client()
    for _ in range(2):
        assert client.post("/order", json={"item": "widget", "quantity": 1}).status_code == 202
    assert value(client, "http_requests_total", method="POST", route="/order",
                 status="202") == 2
    assert value(client, "gateway_order_batch_size_count") == 2
    assert value(client, "gateway_order_batch_size_sum") == 2


def test_queue_depths_of_the_topology_queues_are_read_once_per_cache_period(app):
    client = app.test_client()
    assert value(client, "nameko_topology_queue_messages_ready", queue="order_placed_queue") == 7
    assert value(client, "nameko_topology_queue_messages_unacked",
                 queue="order_placed_queue") == 2
    assert value(client, "nameko_topology_queue_consumers", queue="order_placed_queue") == 1
    assert value(client, "nameko_topology_queue_messages_ready",
                 queue="not_in_the_topology") is None
    assert value(client, "nameko_topology_queue_depth_read_failed") == 0
    assert app.extensions["management"].reads == 1  # five scrapes, one read


def test_a_failed_depth_read_still_answers_and_says_so(app):
    app.extensions["management"] = DepthManagement(error=ManagementError("GET ...: refused"))
    client = app.test_client()
    assert value(client, "nameko_topology_queue_depth_read_failed") == 1
    assert value(client, "nameko_topology_queue_messages_ready",
                 queue="order_placed_queue") is None
    assert value(client, "http_requests_total", method="GET", route="/metrics",
                 status="200") >= 1


def test_the_depth_cache_expires():
    management = DepthManagement({"q": (1, 0, 0)})
    collector = QueueDepthCollector(lambda: management, type("T", (), {
        "declared_queues": {"q": None}})(), cache_seconds=0)
    list(collector.collect())
    list(collector.collect())
    assert management.reads == 2


@pytest.mark.parametrize("exc, outcome", [
    (None, "ok"), (RemoteError("OrderConflict", "taken"), "remote_error"),
    (RpcTimeout("late"), "timeout"), (ServiceUnavailable("down"), "unavailable"),
    (ValueError("bad"), "error"),
])
def test_rpc_outcomes(exc, outcome):
    assert outcome_of(exc) == outcome


def test_the_rpc_client_reports_each_call_to_its_observer():
    seen = []
    client = RpcClient("amqp://unused", observer=lambda *call: seen.append(call))
    client._call = lambda service, method, timeout=None, **kwargs: kwargs["x"]
    assert client.call("orders", "get_order", x=1) == 1
    client._call = lambda service, method, timeout=None, **kwargs: (_ for _ in ()).throw(
        RpcTimeout("late"))
    with pytest.raises(RpcTimeout):
        client.call("orders", "get_order", x=2)
    assert [(s, m, type(e)) for s, m, e, _ in seen] == [
        ("orders", "get_order", type(None)), ("orders", "get_order", RpcTimeout)]
    assert all(seconds >= 0 for *_, seconds in seen)
