"""The gateway's spans (see :mod:`nameko_topology.tracing`): a server span per request, a
child of the client's ``traceparent`` header, and a client span per RPC call, whose
traceparent travels with the call."""
from contextlib import contextmanager, nullcontext

from flask import g, request

from nameko_topology import tracing


def init_app(app):
    """Trace ``app``'s requests when its config's ``TRACING`` or
    ``OTEL_EXPORTER_OTLP_ENDPOINT`` turns tracing on (for the whole process: once on, it
    stays on)."""
    if not tracing.configure("gateway", app.config):
        return
    app.before_request(_start_request_span)
    app.after_request(_record_status)
    app.teardown_request(_end_request_span)


def _start_request_span():
    route = request.url_rule.rule if request.url_rule is not None else "<unmatched>"
    g.trace_span = tracing.start_span(
        f"{request.method} {route}", tracing.SpanKind.SERVER,
        request.headers.get(tracing.TRACEPARENT),
        {"http.request.method": request.method, "http.route": route, "url.path": request.path})


def _record_status(response):
    span = g.get("trace_span")
    if span is not None:
        span.set_attribute("http.response.status_code", response.status_code)
    return response


def _end_request_span(exc):
    tracing.end_span(g.pop("trace_span", None), exc)


# what rpc_span gives when tracing is off: one object for every call, not a generator each
_NO_SPAN = nullcontext()


def rpc_span(service, method):
    """A client span for calling ``service.method`` in this request: a context manager that
    yields the traceparent to send with the call (``None`` when tracing is off)."""
    if not tracing.enabled():
        return _NO_SPAN
    return _rpc_span(service, method)


@contextmanager
def _rpc_span(service, method):
    span = tracing.start_span(
        f"{service}.{method}", tracing.SpanKind.CLIENT,
        tracing.traceparent_of(g.get("trace_span")),
        {"rpc.system": "nameko", "rpc.service": service, "rpc.method": method})
    try:
        yield tracing.traceparent_of(span)
    except Exception as exc:
        tracing.end_span(span, exc)
        raise
    tracing.end_span(span)
