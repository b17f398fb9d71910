"""/health/ready against the running pipeline: it follows a service that stops and comes back."""
import pytest
import requests

from nameko_topology.testing.broker import wait_for

pytestmark = pytest.mark.integration


def ready(stack):
    response = requests.get(stack.url + "/health/ready", timeout=10)
    return response.status_code, response.json()


def test_ready_turns_503_while_inventory_is_stopped_and_200_when_it_is_back(pipeline):
    stack = pipeline("readiness")
    wait_for(lambda: ready(stack)[0] == 200, timeout=30, description="the pipeline ready")
    status, body = ready(stack)
    assert body["status"] == "ready" and set(body["queues"].values()) == {"ok"}
    assert requests.get(stack.url + "/health/live", timeout=10).json() == {"status": "live"}

    stack.stop_service("inventory")
    wait_for(lambda: ready(stack)[0] == 503, timeout=30, description="not ready without inventory")
    # the management API's consumer counts are statistics, refreshed every few seconds
    wait_for(lambda: ready(stack)[1]["queues"]["order_placed_queue"] != "ok", timeout=30,
             description="order_placed_queue without its consumer")
    status, body = ready(stack)
    assert body["status"] == "not ready"
    assert body["services"]["inventory"].startswith("unavailable")
    assert body["queues"]["order_placed_queue"] == "no consumer (inventory)"
    assert body["services"]["orders"] == "ok"
    # liveness is the gateway's own: a stopped service does not make it restart-worthy
    assert requests.get(stack.url + "/health/live", timeout=10).status_code == 200

    stack.start_service("inventory")
    stack.wait_service_ready("inventory")
    wait_for(lambda: ready(stack)[0] == 200, timeout=30, description="ready with inventory back")
