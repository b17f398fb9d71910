"""Checking payloads against their message types, decoding bodies, and what a delivery carries
(``messages.py``, ``delivery.py``), without a broker."""
import json
from datetime import datetime
from decimal import Decimal
from pathlib import Path
from types import SimpleNamespace
from unittest.mock import Mock

import pytest
from amqp.serialization import dumps

from nameko_topology.delivery import attempt_of, copied_headers, copied_properties
from nameko_topology.exceptions import InvalidMessage, MessageTooLarge
from nameko_topology.messages import check_payload, decode_body, outgoing
from nameko_topology.model import load_topology
from nameko_topology.outbox import _OutboxHandle

TOPOLOGY = load_topology(Path(__file__).resolve().parents[2] / "topology.yaml")
ORDER_PLACED = TOPOLOGY.message("OrderPlaced")
ORDER = {"order_id": "o-1", "item": "widget-A", "quantity": 2}
ID_PATTERN = "'^[A-Za-z0-9][A-Za-z0-9._:-]*$'"


@pytest.mark.parametrize("order_id", ["o-1", "018f3c1e-7a2b-7c3d-9e4f-0123456789ab", "a.b:c_d"])
def test_order_ids_in_the_safe_alphabet_are_valid(order_id):
    check_payload(ORDER_PLACED, {**ORDER, "order_id": order_id})


@pytest.mark.parametrize("order_id", ["o-1\n", "x\r\nSet-Cookie: a=b", "a/b", "-a", "a b", "é"])
def test_order_ids_outside_it_are_refused_whole(order_id):
    # "o-1\n": Python's "$" matches before a final newline; the pattern is the whole value
    with pytest.raises(InvalidMessage) as error:
        check_payload(ORDER_PLACED, {**ORDER, "order_id": order_id})
    assert str(error.value) == (
        f"OrderPlaced: field 'order_id': {order_id!r} does not match the pattern {ID_PATTERN}")


def test_a_pattern_is_matched_against_the_whole_value(tmp_path):
    spec = _spec_with(tmp_path, {"name": "code", "type": "string", "pattern": "[0-9]+"})
    check_payload(spec, {"code": "123"})
    with pytest.raises(InvalidMessage, match="'a123b' does not match the pattern '\\[0-9\\]\\+'"):
        check_payload(spec, {"code": "a123b"})


def _spec_with(tmp_path, field, **options):
    path = tmp_path / "topology.yaml"
    path.write_text(json.dumps({
        "exchanges": [{"name": "x"}],
        "queues": [{"name": "q"}],
        "bindings": [{"exchange": "x", "queue": "q", "routing_keys": ["m"]}],
        "messages": [
            {"name": "M", "exchange": "x", "routing_key": "m", "fields": [field], **options}],
    }))
    return load_topology(path).message("M")


CODE = {"name": "code", "type": "string"}


def test_fields_a_message_type_does_not_declare_pass_by_default(tmp_path):
    # the tolerant reader: producers can add fields before their consumers know them
    payload = {"code": "1", "colour": "red"}
    assert json.loads(outgoing(_spec_with(tmp_path, CODE), payload)["body"]) == payload


@pytest.mark.parametrize("extra, named", [
    ({"colour": "red"}, "does not declare: 'colour'"),
    ({"b": 1, "a": 2}, "does not declare: 'a', 'b'"),
    ({"\ud800": 1}, "does not declare: '\\ud800'"),
    ({"'\"\n": None}, "does not declare: '\\'\"\\n'"),
])
def test_additional_fields_false_refuses_a_body_naming_its_other_fields(tmp_path, extra, named):
    spec = _spec_with(tmp_path, CODE, additional_fields=False)
    check_payload(spec, {"code": "1"})
    with pytest.raises(InvalidMessage) as error:
        check_payload(spec, {"code": "1", **extra})
    assert str(error.value).startswith("M: ")
    assert named in str(error.value)


def test_outgoing_refuses_fields_that_additional_fields_false_forbids(tmp_path):
    spec = _spec_with(tmp_path, CODE, additional_fields=False)
    with pytest.raises(InvalidMessage, match="does not declare: 'colour'"):
        outgoing(spec, {"code": "1", "colour": "red"})


def test_a_payload_the_compiled_check_refuses_is_refused_even_if_jsonschema_would_not(
        monkeypatch):
    from nameko_topology import messages

    check_payload(ORDER_PLACED, ORDER)  # builds the checker
    checker = messages._checkers[ORDER_PLACED]
    monkeypatch.setattr(checker, "strict", Mock(iter_errors=lambda payload: iter(())))
    with pytest.raises(InvalidMessage, match="OrderPlaced: data.order_id must match pattern"):
        check_payload(ORDER_PLACED, {**ORDER, "order_id": "o-1\n"})


def test_a_quantity_over_the_maximum_is_refused():
    with pytest.raises(InvalidMessage, match=(
            "field 'quantity': 9223372036854775808 is greater than the maximum of 1000000")):
        check_payload(ORDER_PLACED, {**ORDER, "quantity": 2 ** 63})


@pytest.mark.parametrize("payload, field", [
    ({**ORDER, "item": "probe-\ud800"}, "item"),
    ({**ORDER, "note": {"deep": ["ok", "\udfff"]}}, "note"),
    ({**ORDER, "\ud800": 1}, "\ud800"),
])
def test_a_string_with_a_lone_surrogate_is_refused_naming_its_field(payload, field):
    message = (f"OrderPlaced: field {field!r}: holds a lone surrogate, a string no encoding "
               f"can store")
    with pytest.raises(InvalidMessage) as error:
        check_payload(ORDER_PLACED, payload)
    assert message in str(error.value)
    with pytest.raises(InvalidMessage):  # and nobody can send one
        outgoing(ORDER_PLACED, payload)


def test_paired_surrogates_and_other_non_ascii_text_are_valid():
    check_payload(ORDER_PLACED, {**ORDER, "item": "widget-\U0001F600-é"})


def test_outgoing_refuses_a_body_over_max_bytes():
    body = json.dumps(ORDER, separators=(",", ":"))
    assert outgoing(ORDER_PLACED, ORDER, max_bytes=len(body))["body"] == body
    with pytest.raises(MessageTooLarge, match=(
            f"OrderPlaced: a body of {len(body)} bytes is over the limit of {len(body) - 1} "
            f"bytes \\(MAX_MESSAGE_BYTES\\)")):
        outgoing(ORDER_PLACED, ORDER, max_bytes=len(body) - 1)


def test_the_outbox_refuses_to_stage_a_message_over_max_bytes():
    outbox = Mock(max_message_bytes=10, declarer=Mock(topology=TOPOLOGY))
    connection = Mock()
    handle = _OutboxHandle(outbox, Mock(data={}))
    with pytest.raises(MessageTooLarge, match="is over the limit of 10 bytes"):
        handle.add_many(connection, "OrderPlaced", [ORDER])
    connection.execute.assert_not_called()


def delivery(body=json.dumps(ORDER).encode(), content_type="application/json",
             content_encoding=None, headers=None):
    return SimpleNamespace(body=body, content_type=content_type,
                           content_encoding=content_encoding, headers=headers)


@pytest.mark.parametrize("content_type, content_encoding", [
    (None, None), ("", None), ("application/json", None), ("application/data", "binary"),
    ("application/json; charset=utf-8", None), ("Application/JSON; Charset=\"UTF-8\"", None),
    ("application/json; charset*=utf-8''utf-8", None), ("application/json", "utf-8"),
    ("application/json", "UTF8"),
])
def test_json_with_utf_8_parameters_and_encodings_decodes(content_type, content_encoding):
    assert decode_body(delivery(content_type=content_type,
                                content_encoding=content_encoding)) == ORDER


@pytest.mark.parametrize("content_type, content_encoding, reason", [
    ("application/json; charset=latin-1", None, "unsupported charset in content type "
     "'application/json; charset=latin-1'; JSON bodies are UTF-8"),
    ("text/plain", None, "unsupported content type 'text/plain'; expected application/json"),
    ("\ud800", None, "unsupported content type '\\ud800'; expected application/json"),
    ("application/json", "gzip", "unsupported content encoding 'gzip'; expected one of utf-8, "
     "utf8, binary"),
])
def test_other_content_types_and_encodings_are_refused(content_type, content_encoding, reason):
    with pytest.raises(InvalidMessage) as error:
        decode_body(delivery(content_type=content_type, content_encoding=content_encoding))
    assert str(error.value) == reason


@pytest.mark.parametrize("body", [b"", "", b"[" * 100000 + b"]" * 100000])
def test_bodies_json_cannot_decode_are_invalid(body):
    with pytest.raises(InvalidMessage, match="body is not valid JSON"):
        decode_body(delivery(body=body))


@pytest.mark.parametrize("header, attempt, problem", [
    (None, 1, None), (2, 2, None), (3, 3, None),
    (4, 3, "x-attempt 4 is out of range 1..3: taken as the last attempt"),
    (10 ** 9, 3, "x-attempt 1000000000 is out of range 1..3: taken as the last attempt"),
    pytest.param(10 ** 5000, 3, "x-attempt (an integer of 16610 bits) is out of range 1..3: "
                                "taken as the last attempt", id="5001-digits"),
    (-1, 3, "x-attempt -1 is out of range 1..3: taken as the last attempt"),
    (True, 3, "x-attempt True is not an integer: taken as the last attempt"),
    ("2", 3, "x-attempt '2' is not an integer: taken as the last attempt"),
    ({"a": 1}, 3, "x-attempt (a dict) is not an integer: taken as the last attempt"),
])
def test_the_attempt_header_is_bounded(header, attempt, problem):
    headers = {} if header is None else {"x-attempt": header}
    assert attempt_of(delivery(headers=headers), 3) == (attempt, problem)


def nested(depth):
    value = "x"
    for _ in range(depth):
        value = [value]
    return value


def test_copied_headers_can_always_be_encoded():
    headers = {
        "huge": 2 ** 64, "huger": 10 ** 5000, "old": datetime(1900, 1, 1),
        "decimal": Decimal("1.5"),
        "deep": nested(40),
        "table": {"k" * 300: 1, "ok": "\ud800"}, "set": {1, 2}, "fine": [1, "a", b"b", None],
    }
    copy = copied_headers(headers)
    dumps("F", [copy])  # what py-amqp does with them; raises if it cannot
    assert copy["huge"] == "18446744073709551616"
    assert copy["huger"] == "(an integer of 16610 bits)"
    assert copy["old"] == "(a datetime)"
    assert copy["decimal"] == "(a Decimal)"
    assert copy["table"] == {"'kkkkkkkkkkkk...kkkkkkkkkkkkk'": 1, "ok": "\ud800"}
    assert copy["fine"] == [1, "a", b"b", None]
    assert copy["set"] == "(a set)"


def test_copied_properties_keep_only_what_amqp_carries():
    assert copied_properties({
        "message_id": "m" * 256, "correlation_id": "c-1", "type": 5, "app_id": None,
        "timestamp": 2 ** 64,
    }) == {"correlation_id": "c-1"}
    assert copied_properties({"timestamp": 1700000000}) == {"timestamp": 1700000000}
