"""Fields that every log line of the work at hand carries: the service doing it, and the
correlation id, message id and order id it concerns.

Fields are bound per greenthread (or thread): eventlet gives each greenthread a
:mod:`contextvars` context of its own, so the fields of one worker never show in another's
lines. :func:`log_context` binds fields for a block; :class:`WorkerLogContext`, a dependency every
:class:`~nameko_topology.health.HealthCheck` service has, binds each worker's for the whole
worker. The JSON log format (:mod:`~nameko_topology.logformat`) writes them as fields.
"""
from contextlib import contextmanager
from contextvars import ContextVar
from types import MappingProxyType
from weakref import WeakKeyDictionary

from nameko.extensions import DependencyProvider

from nameko_topology.correlation import CORRELATION_ID_CONTEXT_KEY, usable

_NO_FIELDS = MappingProxyType({})
_fields = ContextVar("nameko_topology_log_fields", default=_NO_FIELDS)

# names of the services set up in this process, for lines written outside any worker
_services = []


def bind_fields(**fields):
    """Bind ``fields`` (those not ``None``) over the fields already bound for this greenthread
    or thread; returns the token that :func:`reset_fields` takes to restore the previous ones.
    Prefer :func:`log_context`; this pair is for hooks that open and close in two calls."""
    return _fields.set(MappingProxyType(
        {**_fields.get(), **{name: value for name, value in fields.items() if value is not None}}))


def reset_fields(token):
    """Restore the fields bound before the :func:`bind_fields` call that returned ``token``."""
    _fields.reset(token)


@contextmanager
def log_context(**fields):
    """Bind ``fields`` (those not ``None``) to every log line written in this block by this
    greenthread, over the fields already bound; the block's end restores them.

    Example::

        for event in events:
            with log_context(order_id=event["order_id"]):
                log.info("reserving")
    """
    token = bind_fields(**fields)
    try:
        yield
    finally:
        reset_fields(token)


def message_fields(message):
    """The log fields of an AMQP ``message``: its ``message_id`` and ``correlation_id``, those
    that are strings of a usable length (a hostile delivery's may be anything)."""
    return {name: message.properties[name] for name in ("message_id", "correlation_id")
            if usable(message.properties.get(name))}


def current_fields():
    """The fields bound for this greenthread, with ``service`` defaulting to the services
    of this process."""
    fields = _fields.get()
    if "service" in fields or not _services:
        return fields
    return {"service": ",".join(_services), **fields}


class WorkerLogContext(DependencyProvider):
    """Binds each worker's log fields for the whole worker, its entrypoint's handling of the
    result included: ``service``, the ``correlation_id`` of its call, and the ``message_id``
    and ``correlation_id`` of the message it handles (a batch handler's worker has none of its
    own: each message has its own, see :func:`log_context`)."""

    def bind(self, container, attr_name):
        # when the container is made, before any extension's setup: the lines that setup
        # writes (a migration's, say) are the service's too
        if container.service_name not in _services:
            _services.append(container.service_name)
        return super().bind(container, attr_name)

    def setup(self):
        self._tokens = WeakKeyDictionary()

    def stop(self):
        if self.container.service_name in _services:
            _services.remove(self.container.service_name)

    # a killed container (nameko's runner_factory kills them all at teardown) is gone too
    kill = stop

    def worker_setup(self, worker_ctx):
        fields = {"service": worker_ctx.service_name}
        fields["correlation_id"] = usable(worker_ctx.data.get(CORRELATION_ID_CONTEXT_KEY))
        deliveries_of = getattr(worker_ctx.entrypoint, "deliveries_of", None)
        deliveries = deliveries_of(worker_ctx) if deliveries_of is not None else ()
        if len(deliveries) == 1:
            fields.update(message_fields(deliveries[0].message))
        self._tokens[worker_ctx] = bind_fields(**fields)

    def worker_teardown(self, worker_ctx):
        token = self._tokens.pop(worker_ctx, None)
        if token is not None:
            reset_fields(token)
