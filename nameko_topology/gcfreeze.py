"""``GcFreeze``: keep the objects a service made while starting out of the collector's full passes.

CPython's full (generation 2) garbage collection walks every object the collector tracks. A
nameko service has about 93,000 of them once its modules are imported and its extensions set
up (nameko, kombu, SQLAlchemy, eventlet, the topology), and keeps nearly all for the life of the
process. On our 2-core machine, under load, such a walk took 60-125 ms: the whole process stops,
every call in flight with it, and a POST that waits on the orders service waits that much longer.
``gc.freeze()`` moves every object tracked so far into a permanent generation that collections
skip; after it, a full collection took 0.3-1.1 ms.

It acts on the whole process, so it is switched on by the config (``GC_FREEZE_AT_START: true``,
as ``config.yaml`` has it), not by merely using the framework: a test process that starts and
drops many containers should not keep each one's reference cycles for ever. Frozen objects are
still freed by reference counting; only a cycle among them that becomes garbage is never
collected, which for start-up objects (modules, classes, the topology) does not happen.
"""
import gc
import logging

from nameko.extensions import SharedExtension

from nameko_topology.constants import DEFAULT_GC_FREEZE, GC_FREEZE_CONFIG_KEY

log = logging.getLogger(__name__)



class GcFreeze(SharedExtension):
    """``gc.freeze()`` once the container's extensions are set up, if the config says so.

    A sub-extension of the framework's entrypoints (``@rpc``, ``@handle``): every service built
    on them has it, once per container.
    """

    def start(self):
        if self.container.config.get(GC_FREEZE_CONFIG_KEY, DEFAULT_GC_FREEZE):
            gc.freeze()
            log.debug("gc.freeze(): %d objects out of the collector's reach", gc.get_freeze_count())
