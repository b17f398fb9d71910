"""The order pipeline's services (orders, inventory, notifications) and the gateway, built on the
framework in :mod:`nameko_topology`."""

#: The most messages one worker of the services' ``@handle`` handlers takes: a worker, a
#: transaction and an ack per message cost more CPU than the handlers' own work. The consumers'
#: prefetch (``PREFETCH_COUNT``, 20 by default) bounds a batch too, so it is the prefetch that
#: sizes batches unless it is raised above this.
HANDLER_BATCH_SIZE = 100
