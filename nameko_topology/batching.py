"""Delivery batching: the deliveries of a batch ``@handle`` queue that arrive in one turn of
the event loop, handed to one worker."""


class CoalescedDeliveries:
    """The deliveries of a batch ``@handle`` queue, handed out in batches once per turn of the
    event loop.

    The consumer thread reads every delivery its socket holds before it yields; the first one
    of a turn schedules a flush, which runs after that and hands the deliveries, up to ``size``
    at a time, to ``handle``. The broker sends no more unacked deliveries than the consumer's
    prefetch, so that bounds a batch too.

    :Parameters:
        size: the most deliveries in one batch.
        spawn: runs a function in a thread of its own.
        handle: takes a list of deliveries; it may wait, and must not raise.
    """

    def __init__(self, size, spawn, handle):
        self.size = size
        self._spawn = spawn
        self._handle = handle
        self.pending = []
        self._flush_scheduled = False

    def add(self, message):
        self.pending.append(message)
        if not self._flush_scheduled:
            self._flush_scheduled = True
            self._spawn(self.flush)

    def flush(self):
        # Handing a batch out can wait (a full worker pool, a dead-letter's confirm): whatever
        # arrives meanwhile joins this flush's next batch rather than a flush of its own.
        while self.pending:
            batch, self.pending = self.pending[:self.size], self.pending[self.size:]
            self._handle(batch)
        self._flush_scheduled = False
