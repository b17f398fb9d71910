"""``HealthCheck``: the ``health`` RPC every topology service answers."""
import inspect

from nameko_topology.database import Database
from nameko_topology.logcontext import WorkerLogContext
from nameko_topology.rpc_entrypoint import rpc
from nameko_topology.tracing import WorkerTracing


class HealthCheck:
    """Mixin giving a service the RPC ``health()``: ``{"status": "ok", "service": name}`` once
    each of its :class:`~nameko_topology.database.Database` dependencies answers a query; the
    error of the first that does not, otherwise. Its workers' log lines carry their fields
    (:class:`~nameko_topology.logcontext.WorkerLogContext`), and its workers are traced when
    tracing is on (:class:`~nameko_topology.tracing.WorkerTracing`).

    Example::

        class Shipping(HealthCheck):
            name = "shipping"
            db = Database(metadata)
    """

    # the mixin every topology service is built on: the one place that reaches them all
    log_context = WorkerLogContext()
    tracing = WorkerTracing()

    def __init_subclass__(cls, **kwargs):
        # The entrypoint is made for each service class, not declared on the mixin: `nameko
        # run` takes every class of a module that has an entrypoint for a service, and a
        # module that imports the mixin would otherwise offer it as one.
        super().__init_subclass__(**kwargs)
        if "health" not in vars(cls):
            def health(self):
                """``{"status": "ok", "service": ...}``; raises if a database does not
                answer."""
                return check_health(self)
            cls.health = rpc(health)


def check_health(service):
    """Ping every :class:`~nameko_topology.database.Database` of ``service`` (a worker's service
    instance); return its health report."""
    for name, _ in inspect.getmembers(type(service), lambda value: isinstance(value, Database)):
        getattr(service, name).ping()
    return {"status": "ok", "service": service.name}
