"""The gateway's health routes (gateway/health.py) against a fake RPC client and a fake
management API: /health, /health/live, /health/ready."""
import pytest

from gateway.app import create_app
from gateway.rpc import RpcTimeout, ServiceUnavailable
from nameko_topology.management import ManagementError
from tests.gateway.test_app import FakeRpc

SERVICES = ("orders", "inventory", "notifications")


class FakeManagement:
    """Answers ``vhost_entities("queues")`` with ``queues`` (name -> consumers), or raises."""

    def __init__(self, queues=None, error=None):
        self.queues, self.error = queues or {}, error

    def vhost_entities(self, kind):
        assert kind == "queues"
        if self.error:
            raise self.error
        return [{"name": name, "consumers": consumers} for name, consumers in self.queues.items()]


@pytest.fixture
def rpc():
    return FakeRpc()


@pytest.fixture
def app(rpc):
    app = create_app({"AMQP_URI": "amqp://unused"}, rpc=rpc)
    # every declared queue with one consumer: a ready pipeline
    app.extensions["management"] = FakeManagement(
        {name: 1 for name in app.extensions["topology"].declared_queues})
    return app


@pytest.fixture
def client(app):
    return app.test_client()


def all_healthy(rpc):
    for service in SERVICES:
        rpc.responses[(service, "health")] = healthy(service)



def healthy(service):
    return {"status": "ok", "service": service}


def test_health_ok(client, rpc):
    for service in ("orders", "inventory", "notifications"):
        rpc.responses[(service, "health")] = healthy(service)
    response = client.get("/health")
    assert response.status_code == 200
    assert response.get_json() == {
        "status": "ok", "gateway": "ok", "broker": "ok",
        "services": {"orders": "ok", "inventory": "ok", "notifications": "ok"}}
    assert all(timeout <= 2 for timeout in rpc.timeouts)


def test_health_names_the_failed_service(client, rpc):
    rpc.responses[("orders", "health")] = healthy("orders")
    rpc.responses[("inventory", "health")] = RpcTimeout("no reply within 1.5s")
    rpc.responses[("notifications", "health")] = {"status": "degraded"}
    response = client.get("/health")
    assert response.status_code == 503
    body = response.get_json()
    assert body["status"] != "ok" and body["gateway"] == "ok" and body["broker"] == "ok"
    assert body["services"]["orders"] == "ok"
    assert body["services"]["inventory"] == "unavailable: no reply within 1.5s"
    assert body["services"]["notifications"].startswith("unavailable: ")


def test_health_broker_down(rpc):
    rpc.broker_error = ServiceUnavailable("broker unavailable: connection refused")
    response = create_app({"AMQP_URI": "amqp://unused"}, rpc=rpc).test_client().get("/health")
    assert response.status_code == 503
    body = response.get_json()
    assert body["broker"] == "unavailable: broker unavailable: connection refused"
    assert set(body["services"]) == {"orders", "inventory", "notifications"}
    assert all(status.startswith("unavailable") for status in body["services"].values())



def test_live_asks_nobody(rpc):
    rpc.broker_error = ServiceUnavailable("broker unavailable: connection refused")
    app = create_app({"AMQP_URI": "amqp://unused"}, rpc=rpc)
    app.extensions["management"] = FakeManagement(error=ManagementError("refused"))
    response = app.test_client().get("/health/live")
    assert response.status_code == 200 and response.get_json() == {"status": "live"}
    assert rpc.calls == []


def test_ready_when_everything_is_there(client, rpc, app):
    all_healthy(rpc)
    response = client.get("/health/ready")
    assert response.status_code == 200
    body = response.get_json()
    assert body["status"] == "ready" and body["broker"] == "ok"
    assert body["services"] == {name: "ok" for name in SERVICES}
    assert set(body["queues"]) == set(app.extensions["topology"].declared_queues)
    assert set(body["queues"].values()) == {"ok"}


def test_not_ready_without_a_consumer_on_a_handled_queue(client, rpc, app):
    all_healthy(rpc)
    app.extensions["management"].queues["order_placed_queue"] = 0
    # no consumer is named for the dead-letter queue: none is needed there
    app.extensions["management"].queues["dead_letter_queue"] = 0
    response = client.get("/health/ready")
    assert response.status_code == 503
    body = response.get_json()
    assert body["status"] == "not ready"
    assert body["queues"]["order_placed_queue"] == "no consumer (inventory)"
    assert body["queues"]["dead_letter_queue"] == "ok"


def test_not_ready_when_a_queue_is_not_declared(client, rpc, app):
    all_healthy(rpc)
    del app.extensions["management"].queues["inventory_reserved_queue"]
    response = client.get("/health/ready")
    assert response.status_code == 503
    assert response.get_json()["queues"]["inventory_reserved_queue"] == "missing"


def test_not_ready_when_a_service_does_not_answer(client, rpc):
    all_healthy(rpc)
    rpc.responses[("inventory", "health")] = RpcTimeout("no reply within 1.5s")
    response = client.get("/health/ready")
    assert response.status_code == 503
    assert response.get_json()["services"]["inventory"] == "unavailable: no reply within 1.5s"


def test_not_ready_when_the_management_api_cannot_say(client, rpc, app):
    all_healthy(rpc)
    app.extensions["management"] = FakeManagement(error=ManagementError("GET ...: refused"))
    response = client.get("/health/ready")
    assert response.status_code == 503
    assert set(response.get_json()["queues"].values()) == {"unknown: GET ...: refused"}
