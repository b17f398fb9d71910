"""Metrics of the running pipeline: the gateway's /metrics and each service's METRICS_PORT
follow orders placed over HTTP and a malformed message; the Grafana dashboard queries only
metrics they expose."""
import json
import re
from pathlib import Path

import pytest
import requests
from kombu import Connection, Exchange, Producer
from prometheus_client.parser import text_string_to_metric_families

from nameko_topology.testing.broker import wait_for
from scripts.stack import SERVICES

pytestmark = pytest.mark.integration

DASHBOARD = Path(__file__).resolve().parents[2] / "deploy" / "grafana" / "nameko-topology.json"
ORDER_PLACED = {"service": "inventory", "queue": "order_placed_queue"}


@pytest.fixture(scope="module")
def stack(pipeline):
    return pipeline("metrics")


def publish_malformed(stack):
    """One body that is not JSON, to the orders exchange as an OrderPlaced."""
    with Connection(stack.amqp_uri, transport_options={"confirm_publish": True}) as connection:
        Producer(connection.default_channel).publish(
            b"{not json", exchange=Exchange("orders", no_declare=True),
            routing_key="order.placed", content_type="application/json", delivery_mode=2)


def scrape(url):
    """{(name, sorted labels): value} of the exposition at ``url``, parsed by
    prometheus_client's parser."""
    response = requests.get(url, timeout=10)
    assert response.status_code == 200
    return {(sample.name, tuple(sorted(sample.labels.items()))): sample.value
            for family in text_string_to_metric_families(response.text)
            for sample in family.samples}


def sample(samples, name, **labels):
    return samples.get((name, tuple(sorted(labels.items()))), 0.0)


def test_orders_and_a_malformed_message_show_in_the_metrics(stack):
    inventory_before = scrape(stack.metrics_url("inventory"))
    gateway_before = scrape(stack.url + "/metrics")

    for number in range(5):
        response = requests.post(stack.url + "/order",
                                 json={"item": "widget-A", "quantity": 1}, timeout=10)
        assert response.status_code == 202, response.text
    publish_malformed(stack)

    def inventory_delta(outcome):
        now = scrape(stack.metrics_url("inventory"))
        return (sample(now, "nameko_topology_messages_total", outcome=outcome, **ORDER_PLACED)
                - sample(inventory_before, "nameko_topology_messages_total", outcome=outcome,
                         **ORDER_PLACED))

    wait_for(lambda: inventory_delta("acked") >= 5, timeout=30, description="5 acked")
    wait_for(lambda: inventory_delta("dead_lettered") >= 1, timeout=30,
             description="1 dead-lettered")
    assert inventory_delta("acked") == 5
    assert inventory_delta("dead_lettered") == 1
    assert inventory_delta("retried") == 0

    gateway_after = scrape(stack.url + "/metrics")
    placed = {"method": "POST", "route": "/order", "status": "202"}
    assert (sample(gateway_after, "http_requests_total", **placed)
            - sample(gateway_before, "http_requests_total", **placed)) == 5

    # the orders service published the five, and its outbox empties
    wait_for(lambda: sample(scrape(stack.metrics_url("orders")),
                            "nameko_topology_published_total", service="orders",
                            message="OrderPlaced") >= 5, timeout=30, description="5 published")
    wait_for(lambda: sample(scrape(stack.metrics_url("orders")),
                            "nameko_topology_outbox_pending", service="orders") == 0,
             timeout=30, description="the orders outbox empty")
    wait_for(lambda: sample(scrape(stack.url + "/metrics"),
                            "nameko_topology_queue_consumers", queue="order_placed_queue") >= 1,
             timeout=30, description="the gateway reads queue depths")


def metric_names(samples):
    return {name for name, _ in samples}


def test_every_metric_the_dashboard_queries_is_exposed(stack):
    requests.post(stack.url + "/order", json={"item": "widget-A", "quantity": 1}, timeout=10)
    dashboard = json.loads(DASHBOARD.read_text())
    expressions = [target["expr"] for panel in dashboard["panels"]
                   for target in panel.get("targets", [])]
    assert expressions
    queried = {name for expr in expressions
               for name in re.findall(r"\b((?:nameko_topology|http|gateway)_[a-z_]+)", expr)}
    wait_for(lambda: sample(scrape(stack.metrics_url("notifications")),
                            "nameko_topology_messages_total", service="notifications",
                            queue="inventory_reserved_queue", outcome="acked") >= 1,
             timeout=30, description="notifications handled an event")
    exposed = metric_names(scrape(stack.url + "/metrics"))
    for service in SERVICES:
        exposed |= metric_names(scrape(stack.metrics_url(service)))
    assert queried - exposed == set()
    assert {"nameko_topology_messages_total", "nameko_topology_handler_seconds_bucket",
            "nameko_topology_outbox_oldest_seconds", "http_requests_total",
            "nameko_topology_queue_messages_ready"} <= queried
