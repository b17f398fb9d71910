"""The request id (gateway/request_id.py) and the access log (gateway/access_log.py), against a
fake RPC client."""
import logging

import pytest

from gateway.app import create_app
from gateway.request_id import HEADER
from nameko_topology.logcontext import current_fields
from tests.gateway.test_app import FakeRpc


@pytest.fixture
def rpc():
    return FakeRpc({("inventory", "get_inventory"): []})


def client_of(rpc, **config):
    return create_app({"AMQP_URI": "amqp://unused", **config}, rpc=rpc).test_client()


@pytest.mark.parametrize("given", ["abc-123", "A" * 128, "req.1:part_2~x"])
def test_a_safe_request_id_is_echoed(rpc, given):
    response = client_of(rpc).get("/inventory", headers={HEADER: given})
    assert response.status_code == 200 and response.headers[HEADER] == given


@pytest.mark.parametrize("given", ["A" * 129, "has space", "new\\nline", "quote\"", "", "é"])
def test_an_unsafe_or_empty_request_id_is_replaced(rpc, given):
    response = client_of(rpc).get("/inventory", headers={HEADER: given})
    made = response.headers[HEADER]
    assert made != given and len(made) == 32 and made.isalnum()


def test_every_response_carries_one_also_errors_and_unknown_routes(rpc):
    client = client_of(rpc)
    for response in (client.get("/no/such/route"), client.post("/order", data="x"),
                     client.delete("/inventory"), client.get("/inventory")):
        assert len(response.headers[HEADER]) == 32
    ids = {client.get("/inventory").headers[HEADER] for _ in range(5)}
    assert len(ids) == 5


def test_lines_logged_while_serving_carry_it_and_are_unbound_after(rpc):
    seen = []

    def get_inventory():
        seen.append(dict(current_fields()))
        return []
    rpc.responses[("inventory", "get_inventory")] = get_inventory
    client_of(rpc).get("/inventory", headers={HEADER: "req-42"})
    assert seen == [{"correlation_id": "req-42"}]
    assert "correlation_id" not in current_fields()


def test_the_access_log_has_one_line_per_request_with_its_fields(rpc, caplog):
    client = client_of(rpc, ACCESS_LOG=True)
    with caplog.at_level(logging.INFO, logger="gateway.access"):
        client.get("/inventory?secret=1", headers={HEADER: "req-1"})
        client.get("/nope")
    first, second = [record for record in caplog.records if record.name == "gateway.access"]
    assert (first.method, first.path, first.status, first.request_id) == (
        "GET", "/inventory", 200, "req-1")
    assert first.duration_ms >= 0 and "secret" not in first.getMessage()
    assert first.getMessage().startswith("GET /inventory 200 ")
    assert second.status == 404 and len(second.request_id) == 32


def test_the_access_log_is_off_unless_configured(rpc, caplog):
    with caplog.at_level(logging.INFO, logger="gateway.access"):
        client_of(rpc).get("/inventory")
    assert not [record for record in caplog.records if record.name == "gateway.access"]


def test_every_call_carries_the_request_id_as_its_correlation_id(rpc):
    client_of(rpc).get("/inventory", headers={HEADER: "req-7"})
    assert rpc.contexts == [{"correlation_id": "req-7"}]
