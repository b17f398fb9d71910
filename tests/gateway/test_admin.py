"""The gateway's /admin API on a real broker: off by default, token-only, the CLI's operations."""
import json
import logging

import pytest

from gateway.app import create_app
from nameko_topology.messages import (
    ORIGINAL_EXCHANGE_HEADER, ORIGINAL_ROUTING_KEY_HEADER, QUEUE_HEADER, REASON_HEADER,
)

pytestmark = pytest.mark.integration

TOKEN = "s3cret-admin-token"
AUTH = {"Authorization": f"Bearer {TOKEN}"}
DLQ = "dead_letter_queue"
ROUTES = [("get", "/admin/dead-letters"), ("get", "/admin/dead-letters/x"),
          ("post", "/admin/dead-letters/replay"), ("delete", "/admin/dead-letters/x"),
          ("get", "/admin/queues")]


class NoRpc:
    def call(self, *args, **kwargs):
        raise AssertionError("the admin API calls no service")

    def check_broker(self, timeout):
        pass


def make_client(vhost, **config):
    return create_app({"AMQP_URI": vhost.amqp_uri, **config}, rpc=NoRpc()).test_client()


@pytest.fixture
def client(vhost, topology):
    return make_client(vhost, ADMIN_TOKEN=TOKEN)


def dead_letter(vhost, order_id, reason="invalid message: test"):
    vhost.publish("dlx_exchange", "order.placed",
                  {"order_id": order_id, "item": "widget-A", "quantity": 1},
                  headers={REASON_HEADER: reason, QUEUE_HEADER: "order_placed_queue",
                           ORIGINAL_EXCHANGE_HEADER: "orders",
                           ORIGINAL_ROUTING_KEY_HEADER: "order.placed"})


@pytest.mark.parametrize("method, path", ROUTES)
def test_without_a_configured_token_every_admin_route_is_a_json_404(
        vhost, topology, monkeypatch, method, path):
    monkeypatch.delenv("ADMIN_TOKEN", raising=False)
    response = getattr(make_client(vhost), method)(path, headers=AUTH)
    assert response.status_code == 404 and response.is_json


@pytest.mark.parametrize("method, path", ROUTES)
@pytest.mark.parametrize("headers", [{}, {"Authorization": "Bearer wrong"},
                                     {"Authorization": TOKEN}, {"Authorization": "Bearer"}])
def test_a_missing_or_wrong_token_is_a_401_with_www_authenticate(
        client, method, path, headers):
    response = getattr(client, method)(path, headers=headers)
    assert response.status_code == 401 and response.is_json
    assert response.headers["WWW-Authenticate"].startswith("Bearer")
    assert TOKEN not in response.get_data(as_text=True)


def test_list_show_replay_and_delete_behave_as_the_cli(client, vhost, caplog):
    caplog.set_level(logging.INFO, logger="gateway.admin")
    for order_id in ("a-1", "a-2", "a-3"):
        dead_letter(vhost, order_id, reason=f"invalid message: {order_id}")

    listing = client.get("/admin/dead-letters?limit=10", headers=AUTH)
    assert listing.status_code == 200
    ids = [r["id"] for r in listing.get_json()["dead_letters"]]
    assert len(ids) == 3 and vhost.depth(DLQ) == 3
    shown = client.get(f"/admin/dead-letters/{ids[0]}", headers=AUTH).get_json()
    assert json.loads(shown["body"])["order_id"] == "a-1"
    assert shown["headers"][REASON_HEADER] == "invalid message: a-1"
    assert client.get("/admin/dead-letters?reason=A-2", headers=AUTH).get_json()["count"] == 1

    replay = client.post("/admin/dead-letters/replay", json={"ids": [ids[0], "nope"]},
                         headers=AUTH).get_json()
    assert [item["id"] for item in replay["replayed"]] == [ids[0]]
    assert replay["missing"] == ["nope"] and replay["not_replayed"] == []
    unroutable = client.post("/admin/dead-letters/replay",
                             json={"reason": "a-2", "to_queue": "no_such_queue"},
                             headers=AUTH).get_json()
    assert [item["id"] for item in unroutable["not_replayed"]] == [ids[1]]
    deleted = client.delete(f"/admin/dead-letters/{ids[2]}", headers=AUTH)
    assert deleted.status_code == 200 and deleted.get_json()["purged"] == [ids[2]]
    assert client.delete(f"/admin/dead-letters/{ids[2]}", headers=AUTH).status_code == 404
    assert client.get(f"/admin/dead-letters/{ids[2]}", headers=AUTH).status_code == 404

    assert [m["headers"]["x-replay-count"] for m in vhost.take_messages(
        "order_placed_queue")] == [1]
    assert [r["id"] for r in client.get("/admin/dead-letters", headers=AUTH).get_json()[
        "dead_letters"]] == [ids[1]]
    logged = "\n".join(record.getMessage() for record in caplog.records)
    assert f"admin replay: ids=['{ids[0]}'] count=1" in logged
    assert f"admin delete: ids=['{ids[2]}'] count=1" in logged
    assert TOKEN not in logged


def test_queues_gives_each_declared_queue(client, vhost):
    dead_letter(vhost, "q-1")
    stats = client.get("/admin/queues", headers=AUTH).get_json()
    assert set(stats) == {"order_placed_queue", "inventory_reserved_queue",
                          "inventory_failed_queue", "order_status_reserved_queue",
                          "order_status_failed_queue", DLQ}
    assert set(stats[DLQ]) == {"messages", "ready", "unacked", "consumers"}


@pytest.mark.parametrize("method, path, body, field", [
    ("get", "/admin/dead-letters?limit=0", None, "limit"),
    ("get", "/admin/dead-letters?limit=abc", None, "limit"),
    ("get", "/admin/dead-letters?since=soon", None, "since"),
    ("get", "/admin/dead-letters?queue=no_such_queue", None, "queue"),
    ("post", "/admin/dead-letters/replay", [1], "body"),
    ("post", "/admin/dead-letters/replay", {}, "body"),
    ("post", "/admin/dead-letters/replay", {"ids": ["a"], "all": True}, "body"),
    ("post", "/admin/dead-letters/replay", {"ids": []}, "ids"),
    ("post", "/admin/dead-letters/replay", {"ids": [1]}, "ids"),
    ("post", "/admin/dead-letters/replay", {"reason": ""}, "reason"),
    ("post", "/admin/dead-letters/replay", {"all": "yes"}, "all"),
    ("post", "/admin/dead-letters/replay", {"all": True, "colour": 1}, "colour"),
    ("post", "/admin/dead-letters/replay", {"all": True, "to_queue": 5}, "to_queue"),
])
def test_bad_parameters_are_a_json_4xx_naming_the_parameter(client, vhost, method, path, body,
                                                              field):
    dead_letter(vhost, "b-1")
    response = getattr(client, method)(path, json=body, headers=AUTH)
    assert response.status_code in (400, 404) and response.get_json()["field"] == field
    assert vhost.depth(DLQ) == 1
