"""The Flask gateway against a fake RPC client: validation, status codes, JSON error bodies."""
import io
import json
import logging
import re

import jsonschema_rs
import pytest
import yaml
from nameko.exceptions import RemoteError

from openapi_spec_validator import validate

from gateway.app import ORDER_PLACED, create_app
from nameko_topology import load_topology
from nameko_topology.constants import DEFAULT_TOPOLOGY_FILE
from nameko_topology.exceptions import TopologyError
from gateway.rpc import RpcClient, RpcTimeout, ServiceUnavailable, UnknownService

ORDER = {"order_id": "o-1", "item": "widget", "quantity": 2, "status": "PENDING",
         "reason": None, "created_at": 1700000000.0}


class FakeRpc:
    """Records calls; answers from ``responses[(service, method)]``.

    A response may be a value, an exception to raise, or a callable taking the call's kwargs.
    """

    def __init__(self, responses=None, broker_error=None):
        self.calls = []
        self.timeouts = []
        self.contexts = []
        self.responses = dict(responses or {})
        self.broker_error = broker_error

    def call(self, service, method, timeout=None, context=None, **kwargs):
        if (service, method) == ("orders", "place_orders"):  # the gateway's batches
            return [self._batch_entry(timeout, order) for order in kwargs["orders"]]
        self.calls.append((service, method, kwargs))
        self.timeouts.append(timeout)
        self.contexts.append(context)
        response = self.responses.get((service, method))
        if isinstance(response, Exception):
            raise response
        if callable(response):
            return response(**kwargs)
        return response

    def _batch_entry(self, timeout, order):
        """One entry of a place_orders reply, from the place_order response."""
        try:
            return {"order": self.call("orders", "place_order", timeout=timeout, **order)}
        except RemoteError as exc:
            return {"error": {"exc_type": exc.exc_type, "value": exc.value}}

    def check_broker(self, timeout=1.0):
        if self.broker_error is not None:
            raise self.broker_error


@pytest.fixture
def rpc():
    return FakeRpc({("orders", "place_order"): ORDER})


@pytest.fixture
def app(rpc):
    return create_app({"AMQP_URI": "amqp://unused", "RPC_TIMEOUT": 3, "MAX_BODY_BYTES": 1024},
                      rpc=rpc)


@pytest.fixture
def client(app):
    return app.test_client()


def post_order(client, body=None, data=None, headers=None):
    if data is None:
        return client.post("/order", json=body, headers=headers or {})
    return client.post("/order", data=data, headers=headers or {},
                       content_type="application/json")


def assert_bad_request(response, field, rpc):
    assert response.status_code == 400, response.get_data(as_text=True)
    assert response.is_json
    body = response.get_json()
    assert body["field"] == field
    assert isinstance(body["error"], str) and body["error"]
    assert rpc.calls == [], "nothing may be called for bad input"


# -- bad input: 400 or 413, and no call ---------------------------------------------------------

def test_invalid_json(client, rpc):
    assert_bad_request(post_order(client, data='{"item": "widget", '), "body", rpc)


def test_invalid_utf8(client, rpc):
    assert_bad_request(post_order(client, data=b'{"item": "\xff"}'), "body", rpc)


def test_deeply_nested_json(rpc):
    client = create_app({"AMQP_URI": "amqp://unused"}, rpc=rpc).test_client()  # 16 KiB limit
    assert_bad_request(post_order(client, data="[" * 8000 + "]" * 8000), "body", rpc)


@pytest.mark.parametrize("data", ["[1, 2]", '"widget"', "null", "3"])
def test_body_not_an_object(client, rpc, data):
    assert_bad_request(post_order(client, data=data), "body", rpc)


def test_empty_body(client, rpc):
    assert_bad_request(post_order(client, data=""), "body", rpc)


def test_missing_item(client, rpc):
    assert_bad_request(post_order(client, {"quantity": 1}), "item", rpc)


def test_missing_quantity(client, rpc):
    assert_bad_request(post_order(client, {"item": "widget"}), "quantity", rpc)


@pytest.mark.parametrize("quantity", [
    True, False, 1.5, "3", 0, -1, 0.0, 1_000_001, 1e300, float("inf"), None, [1]])
def test_bad_quantity(client, rpc, quantity):
    assert_bad_request(post_order(client, {"item": "widget", "quantity": quantity}),
                       "quantity", rpc)


@pytest.mark.parametrize("item", ["", "   ", "a" * 101, 5, None, ["widget"], {"a": 1}])
def test_bad_item(client, rpc, item):
    assert_bad_request(post_order(client, {"item": item, "quantity": 1}), "item", rpc)


@pytest.mark.parametrize("item", ["probe-\ud800", "\udfff", "nul\u0000byte"])
def test_an_item_no_database_can_store_is_a_400(client, rpc, item):
    # json.dumps sends them as escapes (\ud800, \u0000), as a client would; the gateway
    # must refuse what a column cannot hold, before the orders service's batch fails on it
    data = json.dumps({"item": item, "quantity": 1})
    assert_bad_request(post_order(client, data=data), "item", rpc)


@pytest.mark.parametrize("order_id", [
    "", "  ", "o" * 101, 5, None, "x\r\nSet-Cookie: a=b", "x\n", "a/b", "../x", "a b", "-x",
    ".x", "caf\u00e9", "x?y", "x#y", "x%2Fy", "x\u0000", "\ud800",
])
def test_bad_order_id(client, rpc, order_id):
    body = {"item": "widget", "quantity": 1, "order_id": order_id}
    assert_bad_request(post_order(client, body), "order_id", rpc)


@pytest.mark.parametrize("order_id", ["A", "0", "a.b_c:d-e", "9" * 100, "0190a1b2c3d4e5f6"])
def test_order_ids_of_the_safe_alphabet_are_accepted(client, rpc, order_id):
    response = post_order(client, {"item": "widget", "quantity": 1, "order_id": order_id})
    assert response.status_code == 202
    assert rpc.calls[0][2]["order_id"] == order_id


def test_location_header_is_percent_encoded_whatever_id_the_service_returns(client, rpc):
    rpc.responses[("orders", "place_order")] = dict(ORDER, order_id="a b/\r\nSet-Cookie: x")
    response = post_order(client, {"item": "widget", "quantity": 1})
    assert response.status_code == 202
    assert response.headers["Location"] == "/orders/a%20b%2F%0D%0ASet-Cookie%3A%20x"
    assert "Set-Cookie" not in response.headers


def test_the_item_length_is_counted_before_the_spaces_are_dropped(client, rpc):
    assert_bad_request(post_order(client, {"item": " " + "w" * 100, "quantity": 1}), "item", rpc)
    assert post_order(client, {"item": " " + "w" * 99, "quantity": 1}).status_code == 202
    assert rpc.calls[0][2]["item"] == "w" * 99


def test_a_bad_request_lists_every_problem_and_names_the_first_field(client, rpc):
    response = post_order(client, {"item": "w" * 101, "quantity": 0, "order_id": "a/b"})
    assert_bad_request(response, "order_id", rpc)
    assert response.get_json()["error"] == (
        "order_id must match ^[A-Za-z0-9][A-Za-z0-9._:-]*$ as a whole; "
        "item must be at most 100 characters long; quantity must be at least 1")


def test_an_integral_number_is_an_integer_quantity(client, rpc):
    # JSON Schema's integer, as the OpenAPI document declares it (schemathesis sends 36.0)
    assert post_order(client, data='{"item": "widget", "quantity": 36.0}').status_code == 202
    assert rpc.calls[0][2]["quantity"] == 36 and type(rpc.calls[0][2]["quantity"]) is int


def test_unknown_keys_are_named(client, rpc):
    response = post_order(client, {"item": "widget", "quantity": 1, "colour": "red", "size": 3})
    assert_bad_request(response, "colour", rpc)
    assert "colour" in response.get_json()["error"] and "size" in response.get_json()["error"]


def assert_too_large(response, rpc):
    assert response.status_code == 413
    assert response.is_json and "too large" in response.get_json()["error"]
    assert response.get_json()["field"] == "body"
    assert rpc.calls == []


def test_body_too_large(client, rpc):
    assert_too_large(
        post_order(client, {"item": "widget", "quantity": 1, "order_id": "x" * 2000}), rpc)


def padded_order(size):
    """A valid order body of exactly ``size`` bytes."""
    body = b'{"item": "widget", "quantity": 1}'
    return body[:-1] + b" " * (size - len(body)) + b"}"


def post_chunked(client, data):
    # no Content-Length: the server (Granian, like this environ) ends the stream where the
    # chunked body ends
    return client.post("/order", input_stream=io.BytesIO(data),
                       headers={"Content-Type": "application/json",
                                "Transfer-Encoding": "chunked"},
                       environ_overrides={"wsgi.input_terminated": True})


def test_chunked_body_over_the_limit_is_refused_not_cut_off(client, rpc):
    assert_too_large(post_chunked(client, padded_order(1024) + b"garbage"), rpc)
    assert_too_large(post_chunked(client, padded_order(1025)), rpc)


def test_chunked_body_at_the_limit_is_accepted(client, rpc):
    assert post_chunked(client, padded_order(1024)).status_code == 202


def test_body_one_byte_over_the_limit_with_content_length_is_refused(client, rpc):
    assert_too_large(post_order(client, data=padded_order(1025)), rpc)
    assert post_order(client, data=padded_order(1024)).status_code == 202


@pytest.mark.parametrize("key", ["", "k" * 201, "caf\u00e9", "tab\there"])
def test_bad_idempotency_key(client, rpc, key):
    response = post_order(client, {"item": "widget", "quantity": 1},
                          headers={"Idempotency-Key": key})
    assert_bad_request(response, "Idempotency-Key", rpc)


def test_any_printable_ascii_idempotency_key_is_accepted_and_never_echoed(client, rpc):
    key = "".join(chr(code) for code in range(0x21, 0x7f)) + ' "\\<>'
    response = post_order(client, {"item": "widget", "quantity": 1},
                          headers={"Idempotency-Key": key})
    assert response.status_code == 202
    assert rpc.calls[0][2]["idempotency_key"] == key
    assert key not in str(response.headers)


# -- POST /order outcomes ---------------------------------------------------------------------

def test_place_order(client, rpc):
    response = post_order(client, {"item": "  widget ", "quantity": 2, "order_id": "o-1"},
                          headers={"Idempotency-Key": "k" * 200, "X-Request-ID": "req-1"})
    assert response.status_code == 202
    assert response.get_json() == ORDER
    assert response.headers["Location"] == "/orders/o-1"
    assert response.headers["X-Request-ID"] == "req-1"
    # the order's own correlation id: its batch-mates have theirs
    assert rpc.calls == [("orders", "place_order", {
        "item": "widget", "quantity": 2, "order_id": "o-1", "idempotency_key": "k" * 200,
        "correlation_id": "req-1"})]
    # the call's share of RPC_TIMEOUT left after it waited for its batch to go out
    [timeout] = rpc.timeouts
    assert 2.5 < timeout <= 3


def test_place_order_without_optional_fields(client, rpc):
    response = post_order(client, {"item": "w" * 100, "quantity": 1_000_000})
    assert response.status_code == 202
    [(service, method, kwargs)] = rpc.calls
    # the gateway names the order itself, so a redelivered call finds it instead of adding one
    order_id = kwargs.pop("order_id")
    assert isinstance(order_id, str) and len(order_id) == 32
    # without an X-Request-ID, the one the gateway made and answered with
    assert kwargs.pop("correlation_id") == response.headers["X-Request-ID"]
    assert (service, method, kwargs) == ("orders", "place_order", {
        "item": "w" * 100, "quantity": 1_000_000, "idempotency_key": None})


def test_each_order_without_an_id_gets_its_own(client, rpc):
    post_order(client, {"item": "widget", "quantity": 1})
    post_order(client, {"item": "widget", "quantity": 1})
    first, second = (kwargs["order_id"] for _, _, kwargs in rpc.calls)
    assert first != second


@pytest.mark.parametrize("content_type", [
    None, "text/plain", "text/plain; charset=utf-8", "application/x-www-form-urlencoded",
    "multipart/form-data; boundary=x", "application/jsonx", "json", "application/xml",
])
def test_body_without_json_content_type_is_a_415(client, rpc, content_type):
    # text/plain and forms are what a browser may send cross-site without a CORS preflight
    headers = {} if content_type is None else {"Content-Type": content_type}
    response = client.post("/order", data='{"item": "widget", "quantity": 1}', headers=headers)
    assert response.status_code == 415
    assert response.get_json()["field"] == "Content-Type"
    assert rpc.calls == []


@pytest.mark.parametrize("content_type", [
    "application/json", "application/json; charset=utf-8", "Application/JSON",
    "application/merge-patch+json",
])
def test_json_content_types_are_accepted(client, rpc, content_type):
    response = client.post("/order", data='{"item": "widget", "quantity": 1}',
                           headers={"Content-Type": content_type})
    assert response.status_code == 202


@pytest.mark.parametrize("body, headers, field", [
    ({"item": "widget", "quantity": 3, "order_id": "o-1"}, {}, "order_id"),
    ({"item": "widget", "quantity": 3}, {"Idempotency-Key": "k1"}, "Idempotency-Key"),
])
def test_conflict(client, rpc, body, headers, field):
    rpc.responses[("orders", "place_order")] = RemoteError(
        "OrderConflict", "{} already names order o-1 (2 x widget)".format(field))
    response = post_order(client, body, headers=headers)
    assert response.status_code == 409
    assert response.get_json()["field"] == field
    assert "already names" in response.get_json()["error"]


def test_conflict_with_both_identifiers_names_the_one_the_service_names(client, rpc):
    rpc.responses[("orders", "place_order")] = RemoteError(
        "OrderConflict", "Idempotency-Key already names order o-9 (2 x widget)")
    response = post_order(client, {"item": "widget", "quantity": 3, "order_id": "o-1"},
                          headers={"Idempotency-Key": "k1"})
    assert response.status_code == 409
    assert response.get_json()["field"] == "Idempotency-Key"


def test_service_rejects_input(client, rpc):
    rpc.responses[("orders", "place_order")] = RemoteError("InvalidMessage", "no such item")
    response = post_order(client, {"item": "widget", "quantity": 1})
    assert response.status_code == 400
    assert response.get_json() == {"error": "no such item", "field": None}


@pytest.mark.parametrize("error", [
    ServiceUnavailable("broker unavailable: connection refused"),
    RpcTimeout("no reply from orders.place_order within 3s"),
    UnknownService("no queue bound for orders.place_order"),
])
def test_unavailable(client, rpc, error):
    rpc.responses[("orders", "place_order")] = error
    response = post_order(client, {"item": "widget", "quantity": 1})
    assert response.status_code == 503
    assert response.is_json
    assert response.get_json()["error"] == "orders service unavailable: {}".format(error)


def test_other_remote_error_is_internal(client, rpc, caplog):
    rpc.responses[("orders", "place_order")] = RemoteError("KeyError", "'boom'")
    with caplog.at_level(logging.ERROR, logger="gateway.app"):
        response = post_order(client, {"item": "widget", "quantity": 1})
    assert response.status_code == 500
    assert response.get_json() == {"error": "internal error"}
    assert any(record.exc_info for record in caplog.records)


# -- reads ----------------------------------------------------------------------------------

def page(items):
    return {"items": items, "next": "1", "more": False}


@pytest.mark.parametrize("path, service, method, kwargs, result, body", [
    ("/orders", "orders", "list_orders",
     {"cursor": None, "limit": 1000, "status": None, "item": None}, page([ORDER]), [ORDER]),
    ("/inventory", "inventory", "get_inventory", {}, {"widget": 7, "gadget": 0},
     {"widget": 7, "gadget": 0}),
    ("/processed", "inventory", "list_processed", {"cursor": None, "limit": 1000},
     page(["o-1", "o-2"]), ["o-1", "o-2"]),
    ("/notifications", "notifications", "list_notifications", {"after": 0, "limit": 1000},
     page([{"id": 1, "order_id": "o-1"}]), [{"id": 1, "order_id": "o-1"}]),
    ("/notifications?after=41&limit=5", "notifications", "list_notifications",
     {"after": 41, "limit": 5}, page([{"id": 42, "order_id": "o-1"}]),
     [{"id": 42, "order_id": "o-1"}]),
])
def test_reads(client, rpc, path, service, method, kwargs, result, body):
    rpc.responses[(service, method)] = result
    response = client.get(path)
    assert response.status_code == 200
    assert response.get_json() == body
    assert rpc.calls == [(service, method, kwargs)]


@pytest.mark.parametrize("query, field", [
    ("after=-1", "after"), ("after=x", "after"), ("after=1.5", "after"), ("after=", "after"),
    ("after=%D9%A3", "after"), ("after=9" * 1 + "9" * 30, "after"),
    ("limit=0", "limit"), ("limit=ten", "limit"), ("limit=1001", "limit"),
])
def test_bad_notification_cursor_is_a_400_naming_it(client, rpc, query, field):
    response = client.get("/notifications?" + query)
    assert response.status_code == 400
    assert response.get_json()["field"] == field
    assert rpc.calls == []


def test_get_order(client, rpc):
    rpc.responses[("orders", "get_order")] = ORDER
    response = client.get("/orders/o-1")
    assert response.status_code == 200 and response.get_json() == ORDER
    assert rpc.calls == [("orders", "get_order", {"order_id": "o-1"})]


@pytest.mark.parametrize("path", ["/orders/a%0D%0Ab", "/orders/a%20b", "/orders/-x",
                                  "/orders/" + "o" * 101, "/orders/caf%C3%A9"])
def test_get_order_outside_the_alphabet_is_a_404_without_a_call(client, rpc, path):
    response = client.get(path)
    assert response.status_code == 404
    assert response.is_json and response.get_json()["error"]
    assert rpc.calls == []


def test_get_order_missing(client, rpc):
    rpc.responses[("orders", "get_order")] = None
    response = client.get("/orders/nope")
    assert response.status_code == 404
    assert response.is_json and "nope" in response.get_json()["error"]


def test_read_unavailable(client, rpc):
    rpc.responses[("inventory", "get_inventory")] = RpcTimeout("no reply within 3s")
    response = client.get("/inventory")
    assert response.status_code == 503
    assert response.get_json()["error"].startswith("inventory service unavailable: ")


def test_unexpected_exception_is_json_500(client, rpc, caplog):
    rpc.responses[("notifications", "list_notifications")] = RuntimeError("bug")
    with caplog.at_level(logging.ERROR, logger="gateway.app"):
        response = client.get("/notifications")
    assert response.status_code == 500
    assert response.get_json() == {"error": "internal error"}
    assert "bug" not in response.get_data(as_text=True)
    assert any(record.exc_info for record in caplog.records)


# -- HTTP errors are JSON ---------------------------------------------------------------------

def test_unknown_route_is_json_404(client):
    response = client.get("/nope")
    assert response.status_code == 404
    assert response.is_json and response.get_json()["error"]


def test_wrong_method_is_json_405(client, rpc):
    response = client.get("/order")
    assert response.status_code == 405
    assert response.is_json and response.get_json()["error"]
    assert "POST" in response.headers["Allow"]
    assert client.delete("/orders").status_code == 405
    assert rpc.calls == []


@pytest.mark.parametrize("path, allow", [
    ("/order", {"POST", "OPTIONS"}), ("/orders", {"GET", "HEAD", "OPTIONS"}),
    ("/orders/o-1", {"GET", "HEAD", "OPTIONS"}),
])
def test_options_is_a_bodiless_204_with_allow(client, rpc, path, allow):
    response = client.options(path)
    assert response.status_code == 204
    assert response.data == b"" and "Content-Type" not in response.headers
    assert set(response.headers["Allow"].split(", ")) == allow
    assert rpc.calls == []


def test_options_of_an_unknown_route_is_a_json_404(client):
    response = client.options("/nope")
    assert response.status_code == 404 and response.is_json


# -- the OpenAPI document --------------------------------------------------------------------

def test_the_openapi_document_is_valid_openapi_3_1(client):
    response = client.get("/openapi.json")
    assert response.status_code == 200 and response.is_json
    document = response.get_json()
    assert document["openapi"].startswith("3.1")
    validate(document)  # raises on an invalid document


def test_the_openapi_document_has_every_route_and_method(app):
    paths = app.extensions["openapi"]["paths"]
    routes = {(re.sub(r"<(\w+)>", r"{\1}", rule.rule), method.lower())
              for rule in app.url_map.iter_rules() if rule.endpoint != "static"
              # the admin API, off by default and token-only, is not the public contract
              and not rule.endpoint.startswith("admin.")
              for method in rule.methods - {"HEAD", "OPTIONS"}}
    assert routes == {(path, method) for path, item in paths.items() for method in item}


def test_the_order_request_fields_are_the_topologys_order_placed(app):
    fields = load_topology(DEFAULT_TOPOLOGY_FILE).message(ORDER_PLACED).json_schema["properties"]
    request = app.extensions["openapi"]["components"]["schemas"]["OrderRequest"]
    assert request["required"] == ["item", "quantity"]
    for name, schema in request["properties"].items():
        assert {key: schema[key] for key in fields[name]} == fields[name]


def test_the_document_and_the_gateway_agree_on_what_is_only_spaces(client, rpc):
    # read as ECMAScript, as JSON Schema (and schemathesis) does: "\\S" leaves U+001C-U+001F
    # and U+0085 to items, which str.strip() drops, and refuses U+FEFF, which it keeps
    item = client.get("/openapi.json").get_json()["components"]["schemas"]["OrderRequest"][
        "properties"]["item"]
    not_only_spaces = jsonschema_rs.validator_for({"pattern": item["allOf"][0]["pattern"]})
    characters = [chr(code) for code in range(0x10000) if not 0xD800 <= code <= 0xDFFF]
    assert [c for c in characters if not_only_spaces.is_valid(c) == c.isspace()] == []
    assert_bad_request(post_order(client, {"item": "\x1f\x85", "quantity": 1}), "item", rpc)
    assert post_order(client, {"item": "\ufeff", "quantity": 1}).status_code == 202


def topology_with_order_placed(tmp_path, **limits):
    """The repo's topology file, with ``limits`` (field name -> options) set on OrderPlaced."""
    document = yaml.safe_load(open(DEFAULT_TOPOLOGY_FILE))
    [message] = [m for m in document["messages"] if m["name"] == ORDER_PLACED]
    for field in message["fields"]:
        field.update(limits.get(field["name"], {}))
    path = tmp_path / "topology.yaml"
    path.write_text(yaml.safe_dump(document))
    return str(path)


def test_the_limits_are_the_topology_files(tmp_path, rpc):
    topology = topology_with_order_placed(
        tmp_path, item={"max_length": 5}, quantity={"maximum": 10},
        order_id={"pattern": "^[a-z0-9]+$"})
    app = create_app({"AMQP_URI": "amqp://unused", "TOPOLOGY_FILE": topology}, rpc=rpc)
    client = app.test_client()
    assert_bad_request(post_order(client, {"item": "abcdef", "quantity": 1}), "item", rpc)
    assert_bad_request(post_order(client, {"item": "abc", "quantity": 11}), "quantity", rpc)
    assert_bad_request(post_order(client, {"item": "abc", "quantity": 1, "order_id": "A1"}),
                       "order_id", rpc)
    assert client.get("/orders/A1").status_code == 404 and rpc.calls == []
    assert post_order(client, {"item": "abcde", "quantity": 10, "order_id": "o"}).status_code \
        == 202
    fields = app.extensions["openapi"]["components"]["schemas"]["OrderRequest"]["properties"]
    assert (fields["item"]["maxLength"], fields["quantity"]["maximum"]) == (5, 10)
    assert fields["order_id"]["pattern"] == "^(?:^[a-z0-9]+$)$"


def test_a_topology_refusing_the_ids_the_gateway_picks_stops_the_app_being_made(tmp_path, rpc):
    topology = topology_with_order_placed(tmp_path, order_id={"pattern": "^o-[0-9]+$"})
    with pytest.raises(TopologyError, match="refuses the ids the gateway picks"):
        create_app({"TOPOLOGY_FILE": topology}, rpc=rpc)


def test_the_topology_file_comes_from_the_environment(tmp_path, rpc, monkeypatch):
    monkeypatch.setenv("TOPOLOGY_FILE", topology_with_order_placed(
        tmp_path, quantity={"maximum": 10}))
    client = create_app({"AMQP_URI": "amqp://unused"}, rpc=rpc).test_client()
    assert_bad_request(post_order(client, {"item": "abc", "quantity": 11}), "quantity", rpc)


def test_an_unreadable_topology_file_stops_the_app_being_made(tmp_path, rpc):
    with pytest.raises(TopologyError, match="cannot read the file"):
        create_app({"TOPOLOGY_FILE": str(tmp_path / "missing.yaml")}, rpc=rpc)


# -- the real client --------------------------------------------------------------------------

def test_default_client_is_built_lazily_and_fails_fast_without_broker():
    app = create_app({"AMQP_URI": "amqp://guest:guest@127.0.0.1:1/", "RPC_TIMEOUT": 10})
    client = app.extensions["rpc"]
    assert isinstance(client, RpcClient)
    assert client._thread is None, "no connection before the first call"
    try:
        response = app.test_client().get("/orders")
        assert response.status_code == 503
        assert response.get_json()["error"].startswith("orders service unavailable: broker")
    finally:
        client.close()
