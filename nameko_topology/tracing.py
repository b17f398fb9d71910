"""OpenTelemetry tracing, on when the environment asks for it and free when it does not.

``TRACING=console`` writes each finished span to stderr, ``TRACING=file:PATH`` appends it to
``PATH`` as one JSON object per line (``{service}`` in ``PATH`` is replaced by the process's
service name, so that each process has a file of its own), and ``OTEL_EXPORTER_OTLP_ENDPOINT``
sends spans over OTLP/HTTP (the extra ``otlp``). With none of them, :func:`enabled` is false,
every hook returns before creating anything, and no span object is ever made.

A trace context travels as W3C ``traceparent``: in the headers of each AMQP message the
framework publishes, and as the ``nameko.traceparent`` context header of RPC calls. One order
makes one trace across the four processes::

    POST /order (gateway, server) -> orders.place_order (gateway, client)
      -> place_order (orders, server) -> publish orders (orders' outbox relay, producer)
        -> process order_placed_queue (inventory, consumer) -> publish inventory (producer)
          -> process inventory_reserved_queue (notifications, consumer)

Span attributes follow OpenTelemetry's messaging conventions for RabbitMQ.
"""
import json
import os
import threading
from weakref import WeakKeyDictionary

from nameko.extensions import DependencyProvider
from opentelemetry import trace
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import (
    BatchSpanProcessor, ConsoleSpanExporter, SimpleSpanProcessor, SpanExporter, SpanExportResult,
)
from opentelemetry.trace import SpanKind, Status, StatusCode
from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator

from nameko_topology.constants import OTLP_ENDPOINT_CONFIG_KEY, TRACING_CONFIG_KEY
from nameko_topology.correlation import usable
from nameko_topology.delivery import is_short_string, original_route

TRACEPARENT = "traceparent"
#: the worker context data key (and so the ``nameko.``-prefixed RPC header) of the caller's
TRACEPARENT_CONTEXT_KEY = "traceparent"
#: the longest traceparent stored with an outbox row: version 00 is 55 characters
MAX_TRACEPARENT_LENGTH = 64

__all__ = ["SpanKind", "configure", "enabled", "start_span", "traceparent_of"]

_propagator = TraceContextTextMapPropagator()
_tracer = None
_lock = threading.Lock()


class JsonLinesExporter(SpanExporter):
    """Appends each span to a file as one JSON object per line."""

    def __init__(self, path):
        self.path = path
        self._lock = threading.Lock()

    def export(self, spans):
        lines = "".join(json.dumps(json.loads(span.to_json())) + "\n" for span in spans)
        with self._lock, open(self.path, "a", encoding="utf-8") as file:
            file.write(lines)
        return SpanExportResult.SUCCESS


def configure(service, environ=os.environ):
    """Set up this process's tracing for ``service`` from ``environ``, once; returns whether
    tracing is on. Raises ``ValueError`` naming ``TRACING`` for a value it does not know."""
    global _tracer
    with _lock:
        if _tracer is not None:
            return True
        processor = _processor(service, environ)
        if processor is None:
            return False
        provider = TracerProvider(resource=Resource.create({"service.name": service}))
        provider.add_span_processor(processor)
        _tracer = provider.get_tracer("nameko_topology")
        return True


def _processor(service, environ):
    setting = (environ.get(TRACING_CONFIG_KEY) or "").strip()
    if setting == "console":
        return SimpleSpanProcessor(ConsoleSpanExporter())
    if setting.startswith("file:") and len(setting) > len("file:"):
        return SimpleSpanProcessor(
            JsonLinesExporter(setting[len("file:"):].replace("{service}", service)))
    if setting:
        raise ValueError(f"TRACING must be console or file:PATH, got {setting!r}")
    if environ.get(OTLP_ENDPOINT_CONFIG_KEY):
        try:
            from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
        except ImportError:
            raise ValueError("OTEL_EXPORTER_OTLP_ENDPOINT is set but the OTLP exporter is not "
                             "installed: pip install 'nameko-topology[otlp]'") from None
        # reads the endpoint, headers and timeout from the standard OTEL_ variables
        return BatchSpanProcessor(OTLPSpanExporter())
    return None


def enabled():
    """Whether tracing is on in this process."""
    return _tracer is not None


def usable_traceparent(value):
    """``value`` if it could be a traceparent (a hostile header may hold anything), else None."""
    if is_short_string(value) and len(value) <= MAX_TRACEPARENT_LENGTH:
        return value
    return None


def start_span(name, kind, traceparent=None, attributes=None):
    """A started span named ``name`` of ``kind``, a child of ``traceparent`` (W3C; none, or one
    that does not parse: a new trace); ``None`` when tracing is off. The caller ends it."""
    if _tracer is None:
        return None
    traceparent = usable_traceparent(traceparent)
    context = _propagator.extract({TRACEPARENT: traceparent}) if traceparent else None
    return _tracer.start_span(name, context=context, kind=kind, attributes=attributes)


def traceparent_of(span):
    """The W3C traceparent naming ``span`` as the parent; ``None`` for no span."""
    if span is None:
        return None
    carrier = {}
    _propagator.inject(carrier, context=trace.set_span_in_context(span))
    return carrier.get(TRACEPARENT)


def end_span(span, exc=None):
    """End ``span`` (``None``: nothing to do), marked as failed by ``exc`` if given."""
    if span is None:
        return
    if exc is not None:
        span.record_exception(exc)
        span.set_status(Status(StatusCode.ERROR, type(exc).__name__))
    span.end()


def messaging_attributes(operation, exchange, routing_key, message_id=None,
                         correlation_id=None):
    """The OpenTelemetry messaging attributes of a RabbitMQ message."""
    attributes = {
        "messaging.system": "rabbitmq",
        "messaging.operation.type": operation,
        "messaging.destination.name": exchange,
        "messaging.rabbitmq.destination.routing_key": routing_key,
    }
    if message_id:
        attributes["messaging.message.id"] = message_id
    if correlation_id:
        attributes["messaging.message.conversation_id"] = correlation_id
    return attributes


# worker context -> its spans: {id(payload): span} for a @handle worker's messages, None: its own
_worker_spans = WeakKeyDictionary()


def traceparent_for(worker_ctx, cause=None):
    """The traceparent of what the worker of ``worker_ctx`` sends because of ``cause`` (a
    payload its handler received; default: the worker's own work); ``None`` when off."""
    spans = _worker_spans.get(worker_ctx)
    if not spans:
        return None
    return traceparent_of(spans.get(None if cause is None else id(cause)))


class WorkerTracing(DependencyProvider):
    """Traces each worker: a consumer span per message a ``@handle`` worker handles (a child of
    the message's ``traceparent`` header), a server span per RPC call (a child of the call's
    ``nameko.traceparent``). Part of every :class:`~nameko_topology.health.HealthCheck`
    service; sets tracing up from the config's ``TRACING`` and ``OTEL_EXPORTER_OTLP_ENDPOINT``.
    """

    def setup(self):
        configure(self.container.service_name, {
            name: self.container.config.get(name)
            for name in (TRACING_CONFIG_KEY, OTLP_ENDPOINT_CONFIG_KEY)})

    def worker_setup(self, worker_ctx):
        if _tracer is None:
            return
        deliveries_of = getattr(worker_ctx.entrypoint, "deliveries_of", None)
        if deliveries_of is None:
            entrypoint = worker_ctx.entrypoint
            span = start_span(f"{worker_ctx.service_name}.{entrypoint.method_name}",
                              SpanKind.SERVER, worker_ctx.data.get(TRACEPARENT_CONTEXT_KEY),
                              {"rpc.system": "nameko", "rpc.service": worker_ctx.service_name,
                               "rpc.method": entrypoint.method_name})
            _worker_spans[worker_ctx] = {None: span}
            return
        spans = {}
        queue = worker_ctx.entrypoint.queue_name
        for delivery in deliveries_of(worker_ctx):
            message = delivery.message
            exchange, routing_key = original_route(message)
            spans[id(delivery.payload)] = start_span(
                f"process {queue}", SpanKind.CONSUMER,
                (message.headers or {}).get(TRACEPARENT),
                messaging_attributes("process", exchange, routing_key,
                                     usable(message.properties.get("message_id")),
                                     usable(message.properties.get("correlation_id"))))
        if len(spans) == 1:
            spans[None] = next(iter(spans.values()))
        _worker_spans[worker_ctx] = spans

    def worker_result(self, worker_ctx, result=None, exc_info=None):
        if _tracer is None:  # as worker_setup: nothing was started
            return
        for span in set((_worker_spans.pop(worker_ctx, None) or {}).values()):
            end_span(span, exc_info[1] if exc_info else None)
