"""LOG_FORMAT=json across the whole pipeline: the four processes' logs are JSON lines, every
one of them, and none holds the broker password or the admin token."""
import json
import uuid

import pytest
import requests

from nameko_topology.management import ManagementApi
from nameko_topology.testing.broker import TestVhost, wait_for
from scripts.stack import GATEWAY, SERVICES, Stack

pytestmark = pytest.mark.integration

ADMIN_TOKEN = "admin-" + uuid.uuid4().hex


@pytest.fixture
def user_uri(rabbit_base_uri):
    """A vhost of its own and the AMQP URI of a user with a long password, made for the test."""
    vhost = TestVhost(rabbit_base_uri).create()
    user, password = f"nt_logs_{uuid.uuid4().hex[:8]}", "pw-" + uuid.uuid4().hex
    api = ManagementApi(rabbit_base_uri)
    api.request("PUT", api.path("users", user), {"password": password, "tags": "management"})
    api.request("PUT", api.path("permissions", vhost.name, user),
                {"configure": ".*", "write": ".*", "read": ".*"})
    host = vhost.amqp_uri.split("@", 1)[1]
    yield f"amqp://{user}:{password}@{host}", password
    vhost.delete()
    api.request("DELETE", api.path("users", user))


def test_every_line_of_every_log_is_json_and_none_holds_a_secret(user_uri, tmp_path):
    amqp_uri, password = user_uri
    stack = Stack(amqp_uri, tmp_path / "data", env={
        "LOG_FORMAT": "json", "ACCESS_LOG": "true", "ADMIN_TOKEN": ADMIN_TOKEN})
    try:
        stack.start(timeout=90)
        placed = [requests.post(stack.url + "/order", json={"item": "widget-A", "quantity": 1},
                                headers={"X-Request-ID": f"logs-{number}"}, timeout=10)
                  for number in range(3)]
        assert [response.status_code for response in placed] == [202] * 3
        order_ids = {response.json()["order_id"] for response in placed}
        # refused: a wrong token, then the right one; an order id that names another order
        assert requests.get(stack.url + "/admin/dead-letters", timeout=10,
                            headers={"Authorization": "Bearer wrong-token-0123"}).status_code == 401
        assert requests.get(stack.url + "/admin/dead-letters", timeout=10,
                            headers={"Authorization": f"Bearer {ADMIN_TOKEN}"}).status_code == 200
        order_id = next(iter(order_ids))
        assert requests.post(stack.url + "/order", timeout=10, json={
            "item": "widget-B", "quantity": 2, "order_id": order_id}).status_code == 409
        wait_for(lambda: order_ids <= {note["order_id"] for note in requests.get(
            stack.url + "/notifications", timeout=10).json()},
            timeout=60, description="the orders' notifications")
    finally:
        stack.stop()

    records = {}
    for name in (*SERVICES, GATEWAY):
        lines = [line for line in stack.log_path(name).read_text().splitlines() if line]
        for line in lines:
            assert password not in line and ADMIN_TOKEN not in line, (name, line)
            assert "wrong-token-0123" not in line, (name, line)
            try:
                records.setdefault(name, []).append(json.loads(line))
            except ValueError:
                pytest.fail(f"{name}.log has a line that is not JSON: {line!r}")
    assert {record.get("service") for record in records[GATEWAY]
            if record["logger"] != "scripts.stack"} == {"gateway"}
    access = [record for record in records[GATEWAY] if record["logger"] == "gateway.access"]
    posted = [record for record in access if record["path"] == "/order"]
    assert [record["request_id"] for record in posted[:3]] == ["logs-0", "logs-1", "logs-2"]
    assert {record["status"] for record in posted} == {202, 409}
    assert [record["status"] for record in access if record["path"] == "/admin/dead-letters"] \
        == [401, 200]
    for name in SERVICES:
        own = [record for record in records[name] if record["logger"] != "scripts.stack"]
        # from the runner's first line on, the service's lines carry its name
        assert {record.get("service") for record in own} == {name}, name
        assert list(own[1])[:5] == ["time", "level", "service", "logger", "message"]
