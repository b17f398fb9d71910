"""Prometheus metrics of a service process: the metric objects, and the server that exposes them.

Every service container of a process (``nameko run a b c``) records into one registry,
``REGISTRY`` (made on first use), and one HTTP server per process serves it on
``METRICS_PORT`` (off when the key is unset). The entrypoints and dependencies record through the small objects here, whose
label children are bound once per queue, method or message type, so that a message costs a
counter increment and a histogram observation, not a label lookup:

- :class:`QueueMetrics` for ``@handle`` (messages by outcome, handler time);
- :class:`RpcMetrics` for ``@rpc`` (call time);
- :class:`PublishedMetrics` and :func:`watch_outbox` for the outbox relay.

Metrics::

    nameko_topology_messages_total{service,queue,outcome}   acked | retried | dead_lettered
    nameko_topology_handler_seconds{service,queue}          histogram, one per handler run
    nameko_topology_published_total{service,message}        outbox messages the broker confirmed
    nameko_topology_outbox_pending{service}                 rows waiting in the outbox
    nameko_topology_outbox_oldest_seconds{service}          age of the oldest of them (0: none)
    nameko_topology_rpc_seconds{service,method}             histogram, one per RPC call
"""
import collections
import logging
import threading
import time
from functools import cache
from time import perf_counter
from types import SimpleNamespace

import eventlet
import eventlet.wsgi
from nameko.extensions import SharedExtension
from sqlalchemy import func, select

from nameko_topology.constants import METRICS_PORT_CONFIG_KEY

log = logging.getLogger(__name__)

# handlers and RPC methods take from well under a millisecond (a lookup) to seconds (a batch
# of database writes): prometheus_client's default buckets start at 5 ms
LATENCY_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5,
                   5.0, 10.0)

#: outcomes of a consumed message
ACKED, RETRIED, DEAD_LETTERED = "acked", "retried", "dead_lettered"


@cache
def _instruments():
    """The registry and the metric objects, made on first use.

    Not at import: prometheus_client imports socketserver and http.server, which then keep
    unpatched ``select`` functions if eventlet patches after them, and a test process imports
    this package (its pytest plugin) before the conftest that patches: a threaded test server
    would then block the whole process."""
    from prometheus_client import CollectorRegistry, Counter, Histogram
    from prometheus_client.process_collector import ProcessCollector

    registry = CollectorRegistry()
    ProcessCollector(registry=registry)  # CPU, memory, open files: the process as a whole
    registry.register(_outboxes)
    return SimpleNamespace(
        REGISTRY=registry,
        MESSAGES=Counter(
            "nameko_topology_messages", "Messages consumed by @handle, by how they were settled",
            ("service", "queue", "outcome"), registry=registry),
        HANDLER_SECONDS=Histogram(
            "nameko_topology_handler_seconds",
            "Duration of one @handle handler run (a whole batch)",
            ("service", "queue"), buckets=LATENCY_BUCKETS, registry=registry),
        PUBLISHED=Counter(
            "nameko_topology_published", "Outbox messages published and confirmed by the broker",
            ("service", "message"), registry=registry),
        RPC_SECONDS=Histogram(
            "nameko_topology_rpc_seconds",
            "Duration of one @rpc call, from its dispatch (a wait for a free worker included) "
            "to its result", ("service", "method"), buckets=LATENCY_BUCKETS, registry=registry),
    )


def __getattr__(name):
    # REGISTRY (the registry of every service container in this process), MESSAGES,
    # HANDLER_SECONDS, PUBLISHED, RPC_SECONDS: made on first use (see _instruments)
    if name in ("REGISTRY", "MESSAGES", "HANDLER_SECONDS", "PUBLISHED", "RPC_SECONDS"):
        return getattr(_instruments(), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


#: the most outbox rows counted at a scrape: the count is then ">= this", at a bounded cost
MAX_COUNTED_OUTBOX_ROWS = 100_000


class _Timer:
    """Observes, into the histogram child ``seconds``, the time from ``started(key)`` to
    ``finished(key)``; ``dropped(key)`` forgets a start that will never finish."""

    def __init__(self, seconds):
        self._seconds = seconds
        # an entry whose worker was killed with its container goes with the container's
        # entrypoint, which holds this
        self._started = {}

    def started(self, key):
        self._started[key] = perf_counter()

    def finished(self, key):
        started = self._started.pop(key, None)
        if started is not None:
            self._seconds.observe(perf_counter() - started)

    def dropped(self, key):
        self._started.pop(key, None)


class QueueMetrics(_Timer):
    """The metrics of one ``@handle`` queue of a service.

    ``started(worker_ctx)`` when a handler's worker is spawned and ``finished(worker_ctx)``
    when its result comes back give one handler-time observation; ``acked``, ``retried`` and
    ``dead_lettered`` are the counters to ``inc(n)`` where messages are settled.
    """

    def __init__(self, service, queue):
        instruments = _instruments()
        super().__init__(instruments.HANDLER_SECONDS.labels(service, queue))
        self.acked = instruments.MESSAGES.labels(service, queue, ACKED)
        self.retried = instruments.MESSAGES.labels(service, queue, RETRIED)
        self.dead_lettered = instruments.MESSAGES.labels(service, queue, DEAD_LETTERED)


class RpcMetrics(_Timer):
    """The call-time histogram of one ``@rpc`` method: ``started(message)`` when its request
    arrives, ``finished(message)`` once its result is known, ``dropped(message)`` if it is
    refused before a worker runs."""

    def __init__(self, service, method):
        super().__init__(_instruments().RPC_SECONDS.labels(service, method))


class PublishedMetrics:
    """``nameko_topology_published_total`` of one service, a child per message type."""

    def __init__(self, service):
        self.service = service
        self._children = {}

    def confirmed(self, message_types):
        """Count one publish per item of ``message_types`` (one per confirmed message)."""
        # one increment per type, not per message: each takes the value's lock, which under
        # eventlet's monkey patching is a green lock, written in Python
        for message_type, count in collections.Counter(message_types).items():
            child = self._children.get(message_type)
            if child is None:
                child = self._children[message_type] = _instruments().PUBLISHED.labels(
                    self.service, message_type)
            child.inc(count)


class _OutboxCollector:
    """``nameko_topology_outbox_pending`` and ``_oldest_seconds``, read from each watched
    outbox table at scrape time: two queries on the primary key, the count capped at
    :data:`MAX_COUNTED_OUTBOX_ROWS`, so a scrape costs the same however far behind the relay is.
    The oldest row is the one with the lowest id (ids grow with insertion)."""

    def __init__(self):
        self._outboxes = {}  # service -> (database handle, table)
        self._lock = threading.Lock()

    def watch(self, service, database, table):
        with self._lock:
            self._outboxes[service] = (database, table)

    def unwatch(self, service):
        with self._lock:
            self._outboxes.pop(service, None)

    def collect(self):
        from prometheus_client.core import GaugeMetricFamily  # see _instruments

        pending = GaugeMetricFamily("nameko_topology_outbox_pending",
                                    "Outbox rows not yet published (capped at "
                                    f"{MAX_COUNTED_OUTBOX_ROWS})", labels=("service",))
        oldest = GaugeMetricFamily("nameko_topology_outbox_oldest_seconds",
                                   "Age of the oldest outbox row not yet published; 0 if none",
                                   labels=("service",))
        with self._lock:
            outboxes = list(self._outboxes.items())
        for service, (database, table) in outboxes:
            try:
                count, created_at = self._read(database, table)
            except Exception as exc:  # a scrape must answer even if a database does not
                log.warning("metrics: could not read %s's outbox: %s", service, exc)
                continue
            pending.add_metric((service,), count)
            oldest.add_metric((service,), 0.0 if created_at is None
                              else max(time.time() - created_at, 0.0))
        yield pending
        yield oldest

    @staticmethod
    def _read(database, table):
        capped = select(table.c.id).limit(MAX_COUNTED_OUTBOX_ROWS).subquery()
        with database.transaction() as connection:
            count = connection.execute(select(func.count()).select_from(capped)).scalar()
            created_at = connection.execute(
                select(table.c.created_at).order_by(table.c.id).limit(1)).scalar()
        return count, created_at


_outboxes = _OutboxCollector()


def watch_outbox(service, database, table):
    """Report the outbox ``table`` of ``service`` (in ``database``, a
    :class:`~nameko_topology.database.DatabaseHandle`) at every scrape."""
    _outboxes.watch(service, database, table)


def unwatch_outbox(service):
    _outboxes.unwatch(service)


class _ProcessServer:
    """The process's one metrics HTTP server, started by the first container that wants it
    and stopped with the last.

    An eventlet WSGI server in a green thread, as nameko serves its own HTTP entrypoints:
    prometheus_client's threaded server would block the whole process in a ``select`` that
    eventlet did not patch."""

    def __init__(self):
        self._lock = threading.Lock()
        self._users = 0
        self.port = None
        self._socket = self._thread = None

    def acquire(self, port):
        with self._lock:
            if self._socket is not None:
                if port != self.port:
                    raise ValueError(
                        f"config {METRICS_PORT_CONFIG_KEY} is {port}, but this process serves "
                        f"its metrics on {self.port} already")
            else:
                try:
                    self._socket = eventlet.listen(("0.0.0.0", port))
                except OSError as exc:
                    raise OSError(exc.errno, f"config {METRICS_PORT_CONFIG_KEY}: cannot serve "
                                             f"metrics on port {port}: {exc.strerror}") from None
                self.port = self._socket.getsockname()[1]
                from prometheus_client import make_wsgi_app  # see _instruments

                self._thread = eventlet.spawn(
                    eventlet.wsgi.server, self._socket, make_wsgi_app(_instruments().REGISTRY),
                    log_output=False)  # one access line per scrape is noise
                log.info("serving metrics on port %s (/metrics)", self.port)
            self._users += 1

    def release(self):
        with self._lock:
            self._users -= 1
            if self._users == 0 and self._socket is not None:
                self._thread.kill()
                self._socket.close()
                self._socket = self._thread = self.port = None


_server = _ProcessServer()


def serving_port():
    """The port this process serves its metrics on, or ``None``."""
    return _server.port


class MetricsServer(SharedExtension):
    """Serves :data:`REGISTRY` on ``METRICS_PORT`` while the container runs; nothing when the
    key is unset. A sub-extension of the framework's entrypoints and of the outbox: one per
    container, one server per process, however many containers share it.

    :raises OSError: at start, naming ``METRICS_PORT`` and the port, if the port is taken.
    """

    def setup(self):
        port = self.container.config.get(METRICS_PORT_CONFIG_KEY)
        self.port = None if port in (None, "") else int(port)
        self._serving = False

    def start(self):
        if self.port is not None and not self._serving:
            _server.acquire(self.port)
            self._serving = True

    def stop(self):
        if self._serving:
            self._serving = False
            _server.release()

    kill = stop
