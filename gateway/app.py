"""The HTTP gateway: a Flask app that validates requests and calls the nameko services over RPC.

Every response with a body is JSON (an ``OPTIONS`` reply is a bodiless 204 with ``Allow``). Bad
input is rejected here (400/413/415) before any service is called; a service that cannot be
reached in time gives 503, never a hang or a 500 traceback. The contract is
``gateway/openapi.py``, served at ``GET /openapi.json``.

Routes::

    POST /order              orders.place_order(item, quantity, order_id, idempotency_key,
                             correlation_id=<the request id>) -> 202
                             (sent batched as orders.place_orders: gateway/batcher.py)
    GET  /orders             orders.list_orders(limit, cursor, status, item), page by page
                             (gateway/pages.py); ?limit=&cursor=&status=&item=
    GET  /orders/<order_id>  orders.get_order(order_id), 404 if unknown
    GET  /inventory          inventory.get_inventory()
    GET  /processed          inventory.list_processed(limit, cursor); ?limit=&cursor=
    GET  /notifications      notifications.list_notifications(after, limit); ?after=<id>&limit=<n>
    GET  /health             broker and every service's health(), 200 or 503
    GET  /health/live        200 while the process answers
    GET  /health/ready       200 once broker, services, queues and consumers are there, or 503
                             (gateway/health.py)
    GET  /openapi.json       the OpenAPI 3.1 document of these routes
    GET  /metrics            Prometheus metrics (gateway/metrics.py), no token
"""
import json
import logging
import os
from contextlib import contextmanager
from dataclasses import replace
from urllib.parse import quote

from flask import Blueprint, Flask, current_app, g, jsonify, request
from uuid6 import uuid7
from werkzeug.exceptions import HTTPException, RequestEntityTooLarge

from gateway import access_log, admin, health, metrics, openapi, pages, request_id, tracing
from gateway.batcher import CallBatcher
from gateway.rpc import RemoteError, RpcClient, ServiceUnavailable
from nameko_topology import load_topology
from nameko_topology.constants import DEFAULT_AMQP_URI, DEFAULT_TOPOLOGY_FILE
from nameko_topology.exceptions import TopologyError
from nameko_topology.management import ManagementApi
from nameko_topology.messages import field_problems
from nameko_topology.pages import MAX_PAGE_SIZE, is_cursor

log = logging.getLogger(__name__)

MAX_IDEMPOTENCY_KEY = 200
#: the keys of a POST /order body; their limits are the topology's message ORDER_PLACED
ORDER_FIELDS = {"item", "quantity", "order_id"}
ORDER_PLACED = "OrderPlaced"


def default_config():
    """The gateway's settings and their defaults (read when an app is created, not at import)."""
    return {
        "AMQP_URI": os.environ.get("AMQP_URI", DEFAULT_AMQP_URI),
        # its OrderPlaced message sets the limits of a POST /order body
        "TOPOLOGY_FILE": os.environ.get("TOPOLOGY_FILE", DEFAULT_TOPOLOGY_FILE),
        "RPC_TIMEOUT": 5.0,  # seconds; an unanswered call becomes a 503 after this
        "HEALTH_TIMEOUT": 1.5,  # seconds per health check, all services checked in parallel
        # /health/ready's management API; unset: the AMQP hosts on RABBITMQ_MANAGEMENT_PORT
        "RABBITMQ_MANAGEMENT_URL": os.environ.get("RABBITMQ_MANAGEMENT_URL"),
        "MAX_BODY_BYTES": 16384,
        "SERVICES": ("orders", "inventory", "notifications"),
        "ORDER_BATCH_MAX": 100,  # most orders in one orders.place_orders call
        "ORDER_BATCH_SENDERS": 2,  # place_orders calls in flight at once (measured: 2 beats 4 and 8)
        # OpenTelemetry tracing (gateway/tracing.py, nameko_topology/tracing.py); unset: off
        "TRACING": os.environ.get("TRACING"),
        "OTEL_EXPORTER_OTLP_ENDPOINT": os.environ.get("OTEL_EXPORTER_OTLP_ENDPOINT"),
        # one log line per request (gateway/access_log.py)
        "ACCESS_LOG": os.environ.get("ACCESS_LOG", "false").strip().lower()
        in ("1", "true", "yes"),
    }


class ApiError(Exception):
    """An error response: ``status`` with the JSON ``body``."""

    def __init__(self, status, body, headers=None):
        super().__init__(status, body)
        self.status = status
        self.body = body
        self.headers = headers or {}


def bad_request(message, field):
    return ApiError(400, {"error": message, "field": field})


def create_app(config=None, rpc=None):
    """Build the gateway app.

    :Parameters:
        config: a dict overriding :func:`default_config` (``AMQP_URI``, ``TOPOLOGY_FILE``,
            ``RPC_TIMEOUT``, ``HEALTH_TIMEOUT``, ``MAX_BODY_BYTES``, ``SERVICES``,
            ``ORDER_BATCH_MAX``, ``ORDER_BATCH_SENDERS``, ``RABBITMQ_MANAGEMENT_URL``,
            ``ACCESS_LOG``, ``TRACING``, ``OTEL_EXPORTER_OTLP_ENDPOINT``).
        rpc: the RPC client; anything with ``call(service, method, timeout=None, **kwargs)``
            and ``check_broker(timeout)``, as :class:`gateway.rpc.RpcClient` has. Tests pass a
            fake. By default a real ``RpcClient`` is built; it connects on first use.

    The client is kept on ``app.extensions["rpc"]``, and the :class:`~gateway.batcher.CallBatcher`
    that places orders on ``app.extensions["order_batcher"]``. Their threads are daemons, so a
    server whose process exits (``python -m gateway``) need not stop them; code that drops an
    app and goes on (tests, an embedding program) calls ``close()`` on both.

    The topology's ``OrderPlaced`` message, which a POST /order body is checked against, is
    kept on ``app.extensions["order_placed"]`` and the OpenAPI document built from it on
    ``app.extensions["openapi"]``; the metrics (:class:`gateway.metrics.GatewayMetrics`) on
    ``app.extensions["metrics"]``; the loaded topology on ``app.extensions["topology"]`` and
    the :class:`~nameko_topology.management.ManagementApi` that ``/health/ready`` asks about
    queues and consumers on ``app.extensions["management"]`` (tests may replace it).

    :raises TopologyError: the ``TOPOLOGY_FILE`` cannot be read, is invalid, or its
        ``OrderPlaced.order_id`` refuses the ids the gateway picks; ``KeyError`` if it declares
        no ``OrderPlaced`` message.
    """
    app = GatewayFlask(__name__)
    app.config.update(default_config())
    app.config.update(config or {})
    # Werkzeug then refuses a larger Content-Length with a 413 before reading, and stops a
    # chunked body one byte past the limit, which _json_body refuses: it must not stop AT the
    # limit, where a cut-off body and a complete one look the same.
    app.config["MAX_CONTENT_LENGTH"] = app.config["MAX_BODY_BYTES"] + 1
    app.json.sort_keys = False  # keep the services' field order
    topology = app.extensions["topology"] = load_topology(app.config["TOPOLOGY_FILE"])
    order_placed, app.extensions["order_id_shape"], app.extensions["item_shape"] = \
        _order_shapes(topology, app.config["TOPOLOGY_FILE"])
    app.extensions["order_placed"] = order_placed
    app.extensions["openapi"] = openapi.document(order_placed)
    app_metrics = metrics.GatewayMetrics(lambda: app.extensions["management"], topology)
    if rpc is None:
        rpc = RpcClient(app.config["AMQP_URI"], timeout=app.config["RPC_TIMEOUT"],
                        observer=app_metrics.rpc_call)
    app.extensions["rpc"] = rpc
    # orders that arrive together are placed with one orders.place_orders call
    app.extensions["order_batcher"] = CallBatcher(
        rpc, "orders", "place_orders", argument="orders", result_key="order",
        max_batch=app.config["ORDER_BATCH_MAX"], senders=app.config["ORDER_BATCH_SENDERS"],
        observe_batch=app_metrics.order_batch.observe)
    # constructed without I/O: /health/ready reads queues and consumers through it
    app.extensions["management"] = ManagementApi(
        app.config["AMQP_URI"], timeout=app.config["HEALTH_TIMEOUT"],
        url=app.config["RABBITMQ_MANAGEMENT_URL"] or None)
    request_id.init_app(app)  # first: every later hook and log line has the request's id
    access_log.init_app(app)
    tracing.init_app(app)
    metrics.init_app(app, app_metrics)  # times and counts every request; GET /metrics
    app.register_blueprint(api)
    app.register_blueprint(health.blueprint)
    app.register_blueprint(admin.blueprint)  # /admin: off unless ADMIN_TOKEN is set
    _register_error_handlers(app)
    return app


def _order_shapes(topology, topology_file):
    """The OrderPlaced message of ``topology``, and the shapes of its ``order_id`` and its
    ``item`` alone (GET /orders/<order_id> and GET /orders?item= check them by themselves)."""
    order_placed = topology.message(ORDER_PLACED)
    order_id_shape, item_shape = (replace(
        order_placed, name=f"{ORDER_PLACED}.{name}",
        fields=tuple(f for f in order_placed.fields if f.name == name))
        for name in ("order_id", "item"))
    # else every order sent without an id would be refused, blaming an order_id nobody sent
    problems = field_problems(order_id_shape, {"order_id": new_order_id()})
    if problems:
        raise TopologyError(topology_file, [
            (f"{ORDER_PLACED}.order_id", "refuses the ids the gateway picks (32 hex digits): "
             + message) for _, message in problems])
    return order_placed, order_id_shape, item_shape


def new_order_id():
    """The id of an order sent without one: a UUIDv7, as the orders service makes them
    (time-ordered ids keep its index writes local)."""
    return uuid7().hex


class GatewayFlask(Flask):
    """Flask, with a bodiless ``OPTIONS`` reply: Flask's default is an empty text/html 200."""

    def make_default_options_response(self):
        response = super().make_default_options_response()
        response.status_code = 204
        del response.headers["Content-Type"]
        return response


api = Blueprint("api", __name__)


def call(service, method, **kwargs):
    """Call a service, in the request's correlation; a broker or service failure becomes a 503
    ApiError."""
    context = {"correlation_id": g.request_id}
    with _unavailable_as_503(service, method), tracing.rpc_span(service, method) as traceparent:
        if traceparent is not None:
            context["traceparent"] = traceparent
        return current_app.extensions["rpc"].call(
            service, method, timeout=current_app.config["RPC_TIMEOUT"], context=context,
            **kwargs)


@contextmanager
def _unavailable_as_503(service, method):
    try:
        yield
    except ServiceUnavailable as exc:
        log.warning("%s.%s failed: %s", service, method, exc)
        raise ApiError(503, {"error": "{} service unavailable: {}".format(service, exc)},
                       headers={"Retry-After": "1"})


@api.post("/order")
def place_order():
    _require_json_content_type()
    body = _json_body()
    kwargs = validate_order(current_app.extensions["order_placed"], body,
                            request.headers.get("Idempotency-Key"))
    # the order's own: the batch call that carries it carries others' too
    kwargs["correlation_id"] = g.request_id
    try:
        with _unavailable_as_503("orders", "place_order"), \
                tracing.rpc_span("orders", "place_order") as traceparent:
            if traceparent is not None:  # the order's own, as its correlation id is
                kwargs["traceparent"] = traceparent
            order = current_app.extensions["order_batcher"].call(
                current_app.config["RPC_TIMEOUT"], **kwargs)
    except RemoteError as exc:
        if exc.exc_type == "OrderConflict":
            raise ApiError(409, {"error": exc.value,
                                 "field": _conflict_field(exc, "order_id" in body, kwargs)})
        if exc.exc_type == "InvalidMessage":  # the service checks the OrderPlaced shape too
            raise bad_request(exc.value, None)
        raise
    headers = {}
    if isinstance(order, dict) and isinstance(order.get("order_id"), str):
        # quoted: whatever id the service returns, the header stays one well-formed line
        headers["Location"] = "/orders/" + quote(order["order_id"], safe="")
    return jsonify(order), 202, headers


@api.get("/orders")
def list_orders():
    filters = {"status": _query_status(), "item": _query_item()}
    return pages.respond(
        lambda cursor, limit: call("orders", "list_orders", cursor=cursor, limit=limit,
                                   **filters),
        _query_limit(), _query_cursor(), "cursor")


@api.get("/orders/<order_id>")
def get_order(order_id):
    # no order can have an id that OrderPlaced refuses: not worth a call
    shape = current_app.extensions["order_id_shape"]
    order = None if field_problems(shape, {"order_id": order_id}) else call(
        "orders", "get_order", order_id=order_id)
    if order is None:
        raise ApiError(404, {"error": "order {} not found".format(order_id)})
    return jsonify(order)


@api.get("/inventory")
def get_inventory():
    return jsonify(call("inventory", "get_inventory"))


@api.get("/processed")
def list_processed():
    return pages.respond(
        lambda cursor, limit: call("inventory", "list_processed", cursor=cursor, limit=limit),
        _query_limit(), _query_cursor(), "cursor")


@api.get("/notifications")
def list_notifications():
    after = _query_int("after", default=0, minimum=0)
    return pages.respond(
        lambda after, limit: call("notifications", "list_notifications", after=after,
                                  limit=limit),
        _query_limit(), after, "after")


@api.get("/openapi.json")
def openapi_document():
    return jsonify(current_app.extensions["openapi"])


# input validation ----------------------------------------------------------------------------

def _require_json_content_type():
    """415 unless the body is declared JSON: a browser sends text/plain and form bodies
    cross-site without asking first (no CORS preflight), but never application/json."""
    mimetype = request.mimetype  # lower case, without parameters such as charset
    if mimetype != "application/json" and not (
            mimetype.startswith("application/") and mimetype.endswith("+json")):
        raise ApiError(415, {"error": "Content-Type must be application/json",
                             "field": "Content-Type"})


def _json_body():
    limit = current_app.config["MAX_BODY_BYTES"]
    raw = _read_at_most(request.stream, limit + 1)
    if len(raw) > limit:  # Content-Length or chunked: too large, never cut off
        raise RequestEntityTooLarge()
    try:
        return json.loads(raw)
    except (ValueError, RecursionError) as exc:  # also bad UTF-8; deep nesting recurses
        raise bad_request("body is not valid JSON: {}".format(exc), "body")


def _read_at_most(stream, size):
    """Up to ``size`` bytes of ``stream``, fewer only at its end (a read may return less)."""
    chunks = []
    while size > 0:
        chunk = stream.read(size)
        if not chunk:
            break
        chunks.append(chunk)
        size -= len(chunk)
    return b"".join(chunks)


def _query_int(name, default, minimum):
    """Query parameter ``name`` as an integer >= ``minimum``; ``default`` when absent."""
    raw = request.args.get(name)
    if raw is None:
        return default
    if not raw.isascii() or not raw.isdigit() or len(raw) > 18 or int(raw) < minimum:
        raise bad_request("{} must be an integer >= {}".format(name, minimum), name)
    return int(raw)


def _query_limit():
    """``limit``: 1 to MAX_PAGE_SIZE rows; ``None`` when absent (the whole list)."""
    limit = _query_int("limit", default=None, minimum=1)
    if limit is not None and limit > MAX_PAGE_SIZE:
        raise bad_request(f"limit must be an integer from 1 to {MAX_PAGE_SIZE}", "limit")
    return limit


def _query_cursor():
    """``cursor``: a page's next, as its Link or X-Next-Cursor header gave it; ``None`` when
    absent."""
    cursor = request.args.get("cursor")
    if cursor is not None and not is_cursor(cursor):
        raise bad_request("cursor must be one a Link or X-Next-Cursor header gave", "cursor")
    return cursor


def _query_status():
    status = request.args.get("status")
    if status is not None and status not in openapi.ORDER_STATUSES:
        raise bad_request("status must be one of " + ", ".join(openapi.ORDER_STATUSES),
                          "status")
    return status


def _query_item():
    """``item``: an item as an order can name it (the topology's OrderPlaced.item)."""
    item = request.args.get("item")
    if item is None:
        return None
    problems = field_problems(current_app.extensions["item_shape"], {"item": item})
    if problems:
        raise bad_request("; ".join(message for _, message in problems), "item")
    if "\x00" in item:  # as in POST /order: no stored item has one
        raise bad_request("item must not contain NUL", "item")
    return item


def validate_order(order_placed, body, idempotency_key=None):
    """Check a POST /order body and header; return place_order's kwargs or raise a 400.

    The fields must make an ``order_placed`` message (the topology's OrderPlaced: its limits are
    the only ones), with the id the order will have: the client's ``order_id``, or a new one.
    The HTTP-only rules are checked here: a JSON object with no other keys, an integral number
    is an integer, an item not only spaces and without NUL, the Idempotency-Key.
    """
    if not isinstance(body, dict):
        raise bad_request("body must be a JSON object", "body")
    unknown = sorted(set(body) - ORDER_FIELDS)
    if unknown:
        raise bad_request("unknown field(s): {}".format(", ".join(unknown)), unknown[0])
    # The id is chosen before the call so that the call is safe to repeat: the broker
    # redelivers a request whose reply was lost, and that delivery must find this order.
    payload = {"order_id": new_order_id()} if "order_id" not in body else {}
    payload.update(body)
    for field in order_placed.fields:
        # JSON Schema's integer, as the OpenAPI document says: 2.0 is 2 (JSON has one number
        # type); 1.5 is not an integer, and the shape refuses it (and true) as one.
        value = payload.get(field.name)
        if field.type == "integer" and isinstance(value, float) and value.is_integer():
            payload[field.name] = int(value)
    problems = field_problems(order_placed, payload)
    if problems:
        raise bad_request("; ".join(message for _, message in problems), problems[0][0])

    # the limits count the item as sent; then " apple" and "apple" are the same stock item
    item = payload["item"].strip()
    if not item:
        raise bad_request("item must not be only spaces", "item")
    if "\x00" in item:  # PostgreSQL's text refuses NUL, which JSON can carry as \u0000
        raise bad_request("item must not contain NUL", "item")

    if idempotency_key is not None and not (
            1 <= len(idempotency_key) <= MAX_IDEMPOTENCY_KEY
            and all(" " <= char <= "~" for char in idempotency_key)):
        raise bad_request("Idempotency-Key must be 1-{} printable ASCII characters".format(
            MAX_IDEMPOTENCY_KEY), "Idempotency-Key")

    return {"item": item, "quantity": payload["quantity"], "order_id": payload["order_id"],
            "idempotency_key": idempotency_key}


def _conflict_field(exc, client_order_id, kwargs):
    """Which of the request's identifiers the service found in use for another order."""
    if not client_order_id:
        return "Idempotency-Key"
    if kwargs["idempotency_key"] is None:
        return "order_id"
    return "Idempotency-Key" if "idempotency" in str(exc.value).lower() else "order_id"


# errors -------------------------------------------------------------------------------------

def _register_error_handlers(app):
    @app.errorhandler(ApiError)
    def api_error(exc):
        return jsonify(exc.body), exc.status, exc.headers

    @app.errorhandler(HTTPException)
    def http_error(exc):
        # Keep werkzeug's response (e.g. the Allow header of a 405), with a JSON body.
        response = exc.get_response()
        body = {"error": (exc.name or "error").lower()}
        if isinstance(exc, RequestEntityTooLarge):
            body = {"error": "request body too large (limit {} bytes)".format(
                app.config["MAX_BODY_BYTES"]), "field": "body"}
        response.data = json.dumps(body)
        response.content_type = "application/json"
        return response

    @app.errorhandler(Exception)
    def unexpected_error(exc):
        log.exception("unhandled error in %s %s", request.method, request.path)
        return jsonify({"error": "internal error"}), 500
