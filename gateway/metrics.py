"""The gateway's Prometheus metrics, served at ``GET /metrics``.

The state (:class:`GatewayMetrics`: a registry of the app's own) is on
``app.extensions["metrics"]``; :func:`init_app` times and counts every request. ``/metrics``
takes no token: it holds counts, durations and queue names, no payload, id or credential, and
Prometheus scrapes without one by default; an operator who must hide traffic volumes keeps the
port off the public network, as for the broker's own metrics.

Metrics::

    http_requests_total{method,route,status}         route: the URL rule (/orders/<order_id>),
                                                      "<unmatched>" for any path no rule matches
    http_request_duration_seconds{route}             histogram
    gateway_rpc_calls_total{service,method,outcome}   ok | remote_error | timeout | unavailable
                                                      | error
    gateway_rpc_call_seconds{service,method}          histogram
    gateway_order_batch_size                          histogram: orders per orders.place_orders
    nameko_topology_queue_messages_ready{queue}       from the management API, for every queue
    nameko_topology_queue_messages_unacked{queue}     of the topology the broker has; read at
    nameko_topology_queue_consumers{queue}            most every QUEUE_DEPTH_CACHE_SECONDS
    nameko_topology_queue_depth_read_failed           1 when the last read failed (no depths)
"""
import logging
import threading
import time

from flask import Blueprint, Response, current_app, request
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Counter, Histogram
from prometheus_client import generate_latest
from prometheus_client.core import GaugeMetricFamily

from gateway.request_id import elapsed
from gateway.rpc import RemoteError, RpcTimeout, ServiceUnavailable
from nameko_topology.metrics import LATENCY_BUCKETS

log = logging.getLogger(__name__)

#: the route label of a request no URL rule matched (a 404, a 405): one label, however many
#: paths clients try
UNMATCHED_ROUTE = "<unmatched>"
#: seconds a queue-depth read is reused: scrapes closer together ask the broker nothing
QUEUE_DEPTH_CACHE_SECONDS = 5.0
BATCH_BUCKETS = (1, 2, 5, 10, 20, 50, 100, 200, 500)
#: the method label of a request: these, or "other" (a client may send any token as a method)
METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})

blueprint = Blueprint("metrics", __name__)


class GatewayMetrics:
    """The metric objects of one gateway app, in a registry of their own (an app per test)."""

    def __init__(self, management, topology):
        """``management()`` returns the :class:`~nameko_topology.management.ManagementApi` to
        read queue depths from (the app's, which tests may replace)."""
        self.registry = registry = CollectorRegistry()
        self.requests = Counter("http_requests", "HTTP requests answered",
                                ("method", "route", "status"), registry=registry)
        self.request_seconds = Histogram(
            "http_request_duration_seconds", "Time to answer an HTTP request", ("route",),
            buckets=LATENCY_BUCKETS, registry=registry)
        self.rpc_calls = Counter("gateway_rpc_calls", "RPC calls made by the gateway",
                                 ("service", "method", "outcome"), registry=registry)
        self.rpc_seconds = Histogram(
            "gateway_rpc_call_seconds", "Time from an RPC call to its reply or failure",
            ("service", "method"), buckets=LATENCY_BUCKETS, registry=registry)
        self.order_batch = Histogram(
            "gateway_order_batch_size", "Orders sent in one orders.place_orders call",
            buckets=BATCH_BUCKETS, registry=registry)
        self.queues = QueueDepthCollector(management, topology)
        registry.register(self.queues)
        # label children by label values: a dict lookup per request or call instead of
        # .labels()'s validation and locking (the label sets are bounded: rules, methods,
        # statuses; services, methods, outcomes)
        self._request_children = {}
        self._rpc_children = {}

    def request(self, method, route, status, seconds):
        """Record one answered request."""
        key = (method, route, status)
        children = self._request_children.get(key)
        if children is None:
            children = self._request_children[key] = (
                self.requests.labels(method, route, str(status)),
                self.request_seconds.labels(route))
        children[0].inc()
        if seconds is not None:
            children[1].observe(seconds)

    def rpc_call(self, service, method, exc, seconds):
        """Record one RPC call that raised ``exc`` (``None``: it returned)."""
        key = (service, method, outcome_of(exc))
        children = self._rpc_children.get(key)
        if children is None:
            children = self._rpc_children[key] = (
                self.rpc_calls.labels(*key), self.rpc_seconds.labels(service, method))
        children[0].inc()
        children[1].observe(seconds)

    def exposition(self):
        return generate_latest(self.registry)


def outcome_of(exc):
    """The ``outcome`` label of an RPC call that raised ``exc``."""
    if exc is None:
        return "ok"
    if isinstance(exc, RemoteError):
        return "remote_error"
    if isinstance(exc, RpcTimeout):
        return "timeout"
    if isinstance(exc, ServiceUnavailable):
        return "unavailable"
    return "error"


class QueueDepthCollector:
    """Ready and unacked messages and consumers of every queue of ``topology``, read from the
    management API (``management()``; its own timeout bounds a scrape) and cached
    :data:`QUEUE_DEPTH_CACHE_SECONDS`, a failed read too: a broker whose API is down costs one
    timeout per period, not one per scrape."""

    def __init__(self, management, topology, cache_seconds=QUEUE_DEPTH_CACHE_SECONDS):
        self.management = management
        self.queue_names = tuple(topology.declared_queues)
        self.cache_seconds = cache_seconds
        self._lock = threading.Lock()  # one read at a time; concurrent scrapes share it
        self._read_at = None
        self._queues = None  # name -> management API's queue, or None when the read failed

    def _current(self):
        with self._lock:
            now = time.monotonic()
            if self._read_at is None or now - self._read_at >= self.cache_seconds:
                self._queues = self._read()
                self._read_at = time.monotonic()
            return self._queues

    def _read(self):
        try:
            live = {queue["name"]: queue
                    for queue in self.management().vhost_entities("queues")}
        except Exception as exc:  # the scrape answers whatever the broker does
            log.warning("metrics: could not read queue depths: %s", exc)
            return None
        return {name: live[name] for name in self.queue_names if name in live}

    def collect(self):
        queues = self._current()
        failed = GaugeMetricFamily("nameko_topology_queue_depth_read_failed",
                                   "1 if the last read of queue depths from the management API "
                                   "failed")
        failed.add_metric((), 1 if queues is None else 0)
        yield failed
        families = [
            (GaugeMetricFamily("nameko_topology_queue_messages_ready",
                               "Messages ready for delivery", labels=("queue",)), "messages_ready"),
            (GaugeMetricFamily("nameko_topology_queue_messages_unacked",
                               "Messages delivered, not yet acked", labels=("queue",)),
             "messages_unacknowledged"),
            (GaugeMetricFamily("nameko_topology_queue_consumers", "Consumers of the queue",
                               labels=("queue",)), "consumers"),
        ]
        for family, field in families:
            for name, queue in (queues or {}).items():
                # a queue just declared has no statistics yet: 0, not a hole in the graph
                family.add_metric((name,), queue.get(field) or 0)
            yield family


def init_app(app, metrics):
    """Keep ``metrics`` on ``app.extensions["metrics"]``, time and count every request, and
    serve ``GET /metrics``."""
    app.extensions["metrics"] = metrics

    @app.after_request
    def record_request(response):
        # each of flask's request, g and current_app is a proxy looked up on every use
        method, rule = request.method, request.url_rule
        metrics.request(method if method in METHODS else "other",
                        rule.rule if rule is not None else UNMATCHED_ROUTE,
                        response.status_code, elapsed())
        return response

    app.register_blueprint(blueprint)


@blueprint.get("/metrics")
def exposition():
    return Response(current_app.extensions["metrics"].exposition(),
                    content_type=CONTENT_TYPE_LATEST)
