"""Dead-letter records from any set of headers, hostile ones included (no broker)."""
import datetime
import decimal
import json

import pytest

from nameko_topology.dlq.operations import DeadLetters, Selection, parse_since
from nameko_topology.dlq.records import (
    PREVIEW_CHARS, pretty_body, record, record_id, replay_headers,
)
from nameko_topology.model import load_topology

TOPOLOGY = load_topology("topology.yaml")
NOW = datetime.datetime(2026, 12, 2, 12, 0, tzinfo=datetime.timezone.utc)


def message(body=b'{"order_id": "o-1"}', headers=None, **properties):
    return {"body": body, "headers": dict(headers or {}), "properties": properties,
            "routing_key": "order.placed"}


def test_a_framework_dead_letter_with_the_whole_contract():
    rec = record(message(headers={
        "x-dead-letter-id": "abc123", "x-rejected-reason": "RuntimeError: boom",
        "x-rejected-queue": "order_placed_queue", "x-original-exchange": "orders",
        "x-original-routing-key": "order.placed", "x-attempt": 3,
        "x-exception-type": "builtins.RuntimeError", "x-service": "inventory",
        "x-handler": "on_order_placed", "x-last-failure-at": "2026-12-02T11:15:00.123456+00:00",
        "x-replay-count": 2,
        # a retry-queue hop: must not make it look broker-dead-lettered
        "x-death": [{"reason": "expired", "queue": "order_placed_queue.retry.1"}],
    }), TOPOLOGY)
    assert {key: rec[key] for key in (
        "id", "source", "queue", "reason", "attempts", "message_type", "exchange",
        "routing_key", "exception_type", "service", "handler", "replay_count",
        "dead_lettered_at")} == {
        "id": "abc123", "source": "framework", "queue": "order_placed_queue",
        "reason": "RuntimeError: boom", "attempts": 3, "message_type": "OrderPlaced",
        "exchange": "orders", "routing_key": "order.placed",
        "exception_type": "builtins.RuntimeError", "service": "inventory",
        "handler": "on_order_placed", "replay_count": 2,
        "dead_lettered_at": "2026-12-02T11:15:00.123456+00:00"}


def test_a_broker_dead_letter_is_read_from_its_newest_x_death_entry():
    rec = record(message(headers={"x-death": [
        {"reason": "expired", "queue": "order_placed_queue", "exchange": "orders",
         "routing-keys": ["order.placed"], "count": 1, "time": datetime.datetime(2026, 12, 2)},
        {"reason": "rejected", "queue": "older"}]}), TOPOLOGY)
    assert (rec["source"], rec["reason"], rec["queue"], rec["message_type"], rec["attempts"],
            rec["dead_lettered_at"]) == (
        "broker", "expired", "order_placed_queue", "OrderPlaced", 1,
        "2026-12-02T00:00:00+00:00")
    assert rec["id"] == record_id(message(headers={"x-death": [
        {"reason": "expired", "queue": "order_placed_queue", "exchange": "orders",
         "routing-keys": ["order.placed"], "count": 1, "time": datetime.datetime(2026, 12, 2)},
        {"reason": "rejected", "queue": "older"}]}))


@pytest.mark.parametrize("headers", [
    {},
    {"x-death": "not a list"},
    {"x-death": [1, 2]},
    {"x-rejected-reason": 12345, "x-attempt": True, "x-replay-count": "many",
     "x-last-failure-at": "yesterday", "x-original-exchange": {"a": b"\xff"}},
    {"x-dead-letter-id": {"nested": [1]}, "x-rejected-reason": b"\xff\xfe bytes"},
    {"x-rejected-reason": "r" * 1_000_000, "big": 2 ** 70, "dec": decimal.Decimal("1.5"),
     "deep": json.loads("[" * 50 + "]" * 50)},
])
def test_hostile_or_missing_headers_give_a_record_not_an_error(headers):
    rec = record(message(body=b"\xff\x00 not json" * 1000, headers=headers), TOPOLOGY)
    json.dumps(rec)  # all of it is JSON
    assert len(rec["id"]) == 32
    assert rec["replay_count"] in (0,) and rec["attempts"] is None
    assert len(rec["body_preview"]) <= PREVIEW_CHARS + 3
    assert len(json.dumps(rec)) < 20_000


def test_the_id_ignores_the_delivery_count_a_quorum_queue_adds():
    plain = message(headers={"x-death": [{"reason": "maxlen"}]})
    counted = message(headers={"x-death": [{"reason": "maxlen"}], "x-delivery-count": 3})
    other = message(body=b"{}", headers={"x-death": [{"reason": "maxlen"}]})
    assert record_id(plain) == record_id(counted) != record_id(other)


def test_a_replay_drops_the_record_and_counts_one_more_replay():
    headers = {"x-dead-letter-id": "i", "x-rejected-reason": "r", "x-rejected-queue": "q",
               "x-attempt": 3, "x-exception-type": "E", "x-exception-message": "m",
               "x-exception-traceback": "t", "x-service": "s", "x-handler": "h",
               "x-first-failure-at": "a", "x-last-failure-at": "b", "x-death": [{}],
               "x-replay-count": 1, "app-header": "kept", "x-delivery-count": 2}
    assert replay_headers(headers, "orders", "order.placed") == {
        "app-header": "kept", "x-replay-count": 2, "x-original-exchange": "orders",
        "x-original-routing-key": "order.placed"}


def test_bodies_are_pretty_when_json_and_shown_when_not():
    assert pretty_body(b'{"a":[1]}') == '{\n  "a": [\n    1\n  ]\n}'
    assert pretty_body(b"plain") == "plain"
    assert pretty_body(b"\xff").startswith("(not UTF-8; base64)")


def test_since_takes_iso_times_and_durations():
    assert parse_since("15m", now=NOW) == NOW - datetime.timedelta(minutes=15)
    assert parse_since("2026-12-02T11:00:00", now=NOW) == NOW - datetime.timedelta(hours=1)
    with pytest.raises(ValueError, match="neither an ISO-8601 time"):
        parse_since("soon")


def test_a_selection_by_reason_and_since():
    old = message(headers={"x-rejected-reason": "Invalid message: x",
                           "x-last-failure-at": "2026-12-01T00:00:00+00:00"})
    unknown_time = message(headers={"x-rejected-reason": "invalid message: y"})
    assert Selection(reason="INVALID").matches(old)
    assert not Selection(reason="timeout").matches(old)
    assert not Selection(since=NOW).matches(old)
    assert not Selection(since=NOW).matches(unknown_time)
    assert Selection().all and Selection(ids=["x"]).matches(old) is False


def test_an_explicit_management_url_is_where_the_tools_ask():
    dead_letters = DeadLetters("amqp://u:p@broker:5672/v", topology=None,
                               management_url="http://admin:secret@mgmt:15999/")

    api = dead_letters._management()

    assert (api.base_url, api.vhost, api.user) == ("http://mgmt:15999/api", "v", "admin")
