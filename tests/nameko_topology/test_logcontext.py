"""Each worker's log lines carry its service, message and correlation ids (WorkerLogContext),
in a real container on the real broker."""
import io
import json
import logging

import pytest
from nameko.standalone.rpc import ClusterRpcProxy

from nameko_topology import HealthCheck, handle, rpc
from nameko_topology.logformat import JsonLineFormatter

pytestmark = pytest.mark.integration

log = logging.getLogger("test_logcontext.service")
ORDER = {"order_id": "o-7", "item": "widget-A", "quantity": 1}


class LoggingConsumer(HealthCheck):
    name = "logging_consumer"

    @handle("order_placed_queue")
    def on_order_placed(self, order):
        log.info("handling %s", order["order_id"])

    @handle("inventory_reserved_queue", batch_size=10)
    def on_reserved(self, events):
        log.info("a batch of %d", len(events))

    @rpc
    def hello(self):
        log.info("hello called")


@pytest.fixture
def json_lines():
    """The JSON lines logged on ``test_logcontext.service`` and by the framework."""
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.setFormatter(JsonLineFormatter())
    loggers = [logging.getLogger(name) for name in ("test_logcontext.service", "nameko_topology")]
    for logger in loggers:
        logger.addHandler(handler)
        logger.setLevel(logging.INFO)
    yield lambda: [json.loads(line) for line in stream.getvalue().splitlines()]
    for logger in loggers:
        logger.removeHandler(handler)


def test_a_handled_message_logs_with_its_ids(run_services, publish, wait_for, json_lines):
    run_services(LoggingConsumer)
    message_id = publish("OrderPlaced", ORDER, correlation_id="corr-7")
    line = wait_for(lambda: next((line for line in json_lines()
                                  if line["message"] == "handling o-7"), None),
                    description="the handler's line")
    assert line["service"] == "logging_consumer"
    assert line["message_id"] == message_id
    assert line["correlation_id"] == "corr-7"


def test_an_invalid_message_is_dead_lettered_with_its_ids_in_the_line(
        run_services, publish_raw, wait_for, json_lines):
    run_services(LoggingConsumer)
    publish_raw("orders", "order.placed", b"{not json", message_id="bad-1",
                correlation_id="corr-bad")
    line = wait_for(lambda: next((line for line in json_lines()
                                  if "dead-lettering message" in line["message"]), None),
                    description="the dead-letter line")
    assert line["message_id"] == "bad-1" and line["correlation_id"] == "corr-bad"
    assert line["service"] == "logging_consumer"


def test_a_batch_worker_has_no_message_id_of_its_own(run_services, publish, wait_for,
                                                    json_lines):
    run_services(LoggingConsumer)
    for number in range(3):
        publish("InventoryReserved", {"order_id": f"o-{number}", "item": "widget-A",
                                      "quantity": 1}, correlation_id=f"corr-{number}")
    lines = wait_for(lambda: [line for line in json_lines()
                              if line["message"].startswith("a batch of")],
                     description="the batch handler's lines")
    for line in lines:
        assert line["service"] == "logging_consumer"
        if line["message"] != "a batch of 1":
            assert "message_id" not in line and "correlation_id" not in line


def test_an_rpc_worker_logs_with_the_calls_correlation_id(run_services, rabbit_vhost,
                                                          json_lines):
    run_services(LoggingConsumer)
    with ClusterRpcProxy({"AMQP_URI": rabbit_vhost.amqp_uri},
                         context_data={"correlation_id": "rpc-corr"}) as proxy:
        proxy.logging_consumer.hello()
    line, = [line for line in json_lines() if line["message"] == "hello called"]
    assert line["service"] == "logging_consumer" and line["correlation_id"] == "rpc-corr"
