"""The gateway's contract: the OpenAPI 3.1 document served at ``GET /openapi.json``.

Every route, every status code the app answers and every body it sends or takes. The limits of
a POST /order body are the topology's OrderPlaced message, so :func:`document` builds it from
that. The tests check the document with openapi-spec-validator and run schemathesis against
the live gateway with it (tests/gateway/test_openapi.py).
"""
from nameko_topology.pages import MAX_PAGE_SIZE as _MAX_PAGE_SIZE

#: the statuses an order has, and GET /orders?status= takes
ORDER_STATUSES = ("PENDING", "CONFIRMED", "REJECTED")


def _ref(name):
    """A reference to the component schema ``name``."""
    return {"$ref": f"#/components/schemas/{name}"}


def _error(description, headers=None):
    """A response with the JSON error body."""
    response = _ok(description, _ref("Error"))
    if headers:
        response["headers"] = headers
    return response


def _ok(description, schema):
    """A response whose JSON body is ``schema``."""
    return {"description": description, "content": {"application/json": {"schema": schema}}}


def _read(summary, schema, op_id, extra=None, parameters=None):
    """A GET route that reads from a service: 200 with ``schema``, ``extra``, 500 and 503."""
    responses = {"200": _ok(summary, schema)}
    responses.update(extra or {})
    responses.update({"500": _INTERNAL, "503": _UNAVAILABLE})
    operation = {"summary": summary, "operationId": op_id, "responses": responses}
    if parameters:
        operation["parameters"] = parameters
    return {"get": operation}


def _list(summary, item, op_id, cursor, filters=()):
    """A list route (gateway/pages.py): the whole list, or with ``limit`` one page and a Link
    to the next; ``cursor`` is the parameter that names where a page starts."""
    items = _ref(item) if isinstance(item, str) else item
    starts = {
        "cursor": {"name": "cursor", "in": "query", "required": False,
                   "description": "where the page starts: the cursor of a Link header's next "
                                  "page (opaque; the first page without it)",
                   "schema": {"type": "string", "pattern": "^[0-9]{1,18}$"}},
        "after": {"name": "after", "in": "query", "required": False,
                  "description": "only notices with a higher id (default 0): the last id seen",
                  "schema": {"type": "integer", "minimum": 0, "maximum": 999999999999999999}},
    }[cursor]
    limit = {"name": "limit", "in": "query", "required": False,
             "description": "at most this many, and a Link header to the next page when there "
                            "are more; without it the whole list (streamed)",
             "schema": {"type": "integer", "minimum": 1, "maximum": _MAX_PAGE_SIZE}}
    route = _read(summary, {"type": "array", "items": items}, op_id,
                  extra={"400": _error("a bad " + ", ".join(
                      [p["name"] for p in (limit, starts, *filters)]) + ', named in "field"')},
                  parameters=[limit, starts, *filters])
    route["get"]["responses"]["200"]["headers"] = {"Link": {
        "description": '<the path and query of the next page>; rel="next", when there is '
                       'one (a paged response only)',
        "schema": {"type": "string"}}, "X-Next-Cursor": {
        "description": f"the {cursor} after this page, the last page included: a reader at the "
                       "end passes it later to get only what was added since (a paged "
                       "response only)",
        "schema": {"type": "string", "pattern": "^[0-9]{1,18}$"}}}
    return route


_UNAVAILABLE = _error(
    "a service or the broker did not answer within the RPC timeout (5 s)",
    {"Retry-After": {"description": "seconds to wait before retrying",
                     "schema": {"type": "string"}}})
_INTERNAL = _error('an unexpected error in the gateway or a service: {"error": "internal error"}')

#: an item that is not only spaces, as the gateway's ``str.strip()`` reads them (Python's
#: whitespace; a JSON Schema ``\s`` leaves out U+001C-U+001F and U+0085, and has U+FEFF)
NOT_ONLY_SPACES = (
    "[^\\t-\\r\\u001c-\\u001f \\u0085\\u00a0\\u1680\\u2000-\\u200a\\u2028\\u2029\\u202f\\u205f"
    "\\u3000]")


def document(order_placed):
    """The OpenAPI document of the gateway whose POST /order makes ``order_placed`` messages
    (a :class:`~nameko_topology.model.MessageSpec`)."""
    item = order_placed.json_schema["properties"]["item"]
    return dict(_DOCUMENT, components={"schemas": dict(
        _SCHEMAS, OrderRequest=_order_request(order_placed),
        # what GET /orders?item= takes: any item an OrderPlaced can name
        OrderItem=dict(item, allOf=[{"pattern": "^[^\\u0000]*$"}]))})


def _order_request(order_placed):
    fields = order_placed.json_schema["properties"]
    return {
        "type": "object", "additionalProperties": False,
        # order_id too is in every message, but the gateway picks one when the client does not
        "required": [name for name in order_placed.json_schema["required"] if name != "order_id"],
        "properties": {
            "item": dict(
                fields["item"],
                description="the stock item; its length counted as sent, then surrounding "
                            "spaces are dropped; not only spaces; no NUL, no unpaired surrogates",
                allOf=[{"pattern": NOT_ONLY_SPACES}, {"pattern": "^[^\\u0000]*$"}]),
            "quantity": dict(fields["quantity"]),
            "order_id": dict(fields["order_id"],
                             description="chosen by the client, for safe retries; the gateway "
                                         "picks one without it"),
        },
    }


_DOCUMENT = {
    "openapi": "3.1.0",
    "info": {
        "title": "nameko-topology gateway",
        "version": "1.0.0",
        "description": (
            "The HTTP gateway of the order pipeline. Every response with a body is JSON; an "
            "error body is {\"error\": ..., \"field\"?: ...}. OPTIONS on any route answers 204 "
            "with an Allow header and no body; a method a route does not have is 405 with "
            "Allow. The server itself answers 414 (request line too long) and 431 (headers "
            "too large)."),
    },
    "paths": {
        "/order": {"post": {
            "summary": "Place an order (PENDING); the pipeline then reserves stock and notifies",
            "operationId": "placeOrder",
            "parameters": [{
                "name": "Idempotency-Key", "in": "header", "required": False,
                "description": "1-200 printable ASCII characters; a retry with the same key and "
                               "the same item and quantity returns the stored order",
                "schema": {"type": "string", "minLength": 1, "maxLength": 200,
                           "pattern": "^[!-~]([ -~]*[!-~])?$"},
            }],
            "requestBody": {"required": True, "content": {"application/json": {
                "schema": _ref("OrderRequest")}}},
            "responses": {
                "202": dict(
                    _ok("the order, stored (or the one stored before, for a retry)",
                        _ref("Order")),
                    headers={"Location": {"description": "/orders/<order_id>, percent-encoded",
                                          "schema": {"type": "string"}, "required": True}}),
                "400": _error("a bad field, named in \"field\" (body, item, quantity, order_id, "
                             "an unknown key, Idempotency-Key); nothing stored"),
                "409": _error("the order_id or Idempotency-Key names another order"),
                "413": _error("the body is over 16,384 bytes (Content-Length or chunked); "
                             "\"field\": \"body\""),
                "415": _error("the Content-Type is not application/json (or application/*+json); "
                             "\"field\": \"Content-Type\""),
                "500": _INTERNAL,
                "503": _UNAVAILABLE,
            },
        }},
        "/orders": _list(
            "orders, in the order they were stored", "Order", "listOrders", "cursor",
            filters=[
                {"name": "status", "in": "query", "required": False,
                 "description": "only the orders with this status",
                 "schema": {"enum": list(ORDER_STATUSES)}},
                {"name": "item", "in": "query", "required": False,
                 "description": "only the orders of this item (exactly as stored)",
                 "schema": _ref("OrderItem")},
            ]),
        "/orders/{order_id}": _read(
            "one order", _ref("Order"), "getOrder",
            extra={"404": _error("no such order (also any id outside the order-id alphabet)")},
            parameters=[{"name": "order_id", "in": "path", "required": True,
                         "schema": {"type": "string"}}]),
        "/inventory": _read("stock per item",
                           {"type": "object", "additionalProperties": {"type": "integer",
                                                                       "minimum": 0}},
                           "getInventory"),
        "/processed": _list("the ids of the orders inventory has handled, in that order",
                            {"type": "string"}, "listProcessed", "cursor"),
        "/notifications": _list(
            "notices, in the order they were recorded", "Notification", "listNotifications",
            "after"),
        "/health": {"get": {
            "summary": "the broker's and every service's health",
            "operationId": "health",
            "responses": {
                "200": _ok("all up", _ref("Health")),
                "503": _ok("something is down; the body names it", _ref("Health")),
            },
        }},
        "/health/live": {"get": {
            "summary": "the gateway process answers (asks nothing of the broker or services)",
            "operationId": "live",
            "responses": {"200": _ok("alive", _ref("Live"))},
        }},
        "/health/ready": {"get": {
            "summary": "ready for traffic: broker reachable, every service answering, every "
                       "declared queue there and each topology consumer consuming",
            "operationId": "ready",
            "responses": {
                "200": _ok("ready", _ref("Ready")),
                "503": _ok("not ready; the body names what is missing", _ref("Ready")),
            },
        }},
        "/metrics": {"get": {
            "summary": "Prometheus metrics of the gateway and of the broker's queues "
                       "(gateway/metrics.py); no token",
            "operationId": "metrics",
            "responses": {"200": {"description": "the Prometheus text exposition",
                                  "content": {"text/plain": {"schema": {"type": "string"}}}}},
        }},
        "/openapi.json": {"get": {
            "summary": "this document", "operationId": "openapi",
            "responses": {"200": _ok("the OpenAPI 3.1 document", {"type": "object"})},
        }},
    },
}

_CORRELATION_ID = {
    "type": ["string", "null"],
    "description": "the X-Request-ID of the POST /order that placed the order (null for an "
                   "order stored before correlation ids were)",
}

_SCHEMAS = {
    "Error": {
        "type": "object", "required": ["error"], "additionalProperties": False,
        "properties": {"error": {"type": "string"},
                       "field": {"type": ["string", "null"],
                                 "description": "the input at fault, when there is one"}},
    },
    "Order": {
        "type": "object",
        "required": ["order_id", "item", "quantity", "status", "reason", "correlation_id",
                     "created_at"],
        "additionalProperties": False,
        "properties": {
            "order_id": {"type": "string"},
            "item": {"type": "string"},
            "quantity": {"type": "integer"},
            "status": {"enum": list(ORDER_STATUSES)},
            "reason": {"type": ["string", "null"], "description": "why it was REJECTED"},
            "correlation_id": _CORRELATION_ID,
            "created_at": {"type": "number", "description": "seconds since the epoch"},
        },
    },
    "Notification": {
        "type": "object",
        "required": ["id", "order_id", "kind", "item", "quantity", "message", "correlation_id",
                     "created_at"],
        "additionalProperties": False,
        "properties": {
            "id": {"type": "integer"},
            "order_id": {"type": "string"},
            "kind": {"enum": ["confirmation", "failure"]},
            "item": {"type": "string"},
            "quantity": {"type": "integer"},
            "message": {"type": "string"},
            "correlation_id": _CORRELATION_ID,
            "created_at": {"type": "number"},
        },
    },
    "Live": {
        "type": "object", "required": ["status"], "additionalProperties": False,
        "properties": {"status": {"const": "live"}},
    },
    "Ready": {
        "type": "object", "required": ["status", "broker", "services", "queues"],
        "additionalProperties": False,
        "properties": {
            "status": {"enum": ["ready", "not ready"]},
            "broker": {"type": "string"},
            "services": {"type": "object", "additionalProperties": {"type": "string"}},
            "queues": {"type": "object", "additionalProperties": {"type": "string"},
                       "description": "ok, missing, no consumer (<service>) or unknown: ..."},
        },
    },
    "Health": {
        "type": "object", "required": ["status", "gateway", "broker", "services"],
        "additionalProperties": False,
        "properties": {
            "status": {"enum": ["ok", "unavailable"]},
            "gateway": {"const": "ok"},
            "broker": {"type": "string"},
            "services": {"type": "object", "additionalProperties": {"type": "string"}},
        },
    },
}
