"""The request id: every request has one, on ``flask.g.request_id`` and on its response; and
its start, from which the access log and the metrics time it (:func:`elapsed`).

Every log line written while the request is served carries it as ``correlation_id``. A
client's ``X-Request-ID`` is taken when it is a safe token (:data:`SAFE_REQUEST_ID`: what
could pass through a header, a log line and an AMQP ``correlation_id`` unchanged); otherwise,
or when there is none, the gateway makes one. The response always carries it back, error
responses included, so a client can quote it and an operator find every log line about it.
"""
import re
import secrets
import time

from flask import g, request

from nameko_topology.logcontext import bind_fields, reset_fields

HEADER = "X-Request-ID"
# where WSGI puts it: read there, not through request.headers' case-insensitive lookup
ENVIRON_KEY = "HTTP_X_REQUEST_ID"
MAX_REQUEST_ID_LENGTH = 128
SAFE_REQUEST_ID = re.compile(rf"[A-Za-z0-9._~:-]{{1,{MAX_REQUEST_ID_LENGTH}}}")


def request_id_of(value):
    """``value``, the client's ``X-Request-ID``, when it is safe; else a new id: 128 random
    bits as 32 hex digits."""
    if value is not None and SAFE_REQUEST_ID.fullmatch(value):
        return value
    # as random as uuid4().hex, at about a quarter of its cost: no UUID object is built
    return secrets.token_hex(16)


def init_app(app):
    """Give each request of ``app`` its id, before any other ``before_request`` runs."""
    app.before_request_funcs.setdefault(None, []).insert(0, _take_request_id)
    app.after_request(_echo_request_id)
    app.teardown_request(_unbind_request_id)


def elapsed():
    """Seconds since the current request's first hook ran; ``None`` if it never did."""
    started = g.get("request_started")
    return None if started is None else time.perf_counter() - started


def _take_request_id():
    g.request_started = time.perf_counter()
    g.request_id = request_id = request_id_of(request.environ.get(ENVIRON_KEY))
    # the server's threads serve one request after another: the teardown unbinds it
    g.log_fields_token = bind_fields(correlation_id=request_id)


def _unbind_request_id(exc):
    token = g.pop("log_fields_token", None)
    if token is not None:
        reset_fields(token)


def _echo_request_id(response):
    # g has no id when the request failed before the app's first before_request ran
    response.headers[HEADER] = g.get("request_id") or request_id_of(None)
    return response
