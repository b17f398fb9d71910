"""Ack coalescing: the acks of the workers that finish in one turn of the event loop, sent
as one ``basic.ack``."""
import logging

import eventlet

log = logging.getLogger(__name__)


class CoalescedAcks:
    """Acks for the deliveries of one channel, sent once per turn of the event loop.

    A worker that finishes marks its delivery tag; the first mark of a turn schedules a flush,
    which sends one ``basic.ack(multiple=True)`` up to the highest finished tag below every
    unfinished one (a multiple ack settles every outstanding tag up to it, so it must not reach
    a message still being worked on) and single acks for finished tags above that. A message
    waits for its ack one turn of the loop longer; if the process dies in between, the broker
    redelivers it and the consumer's inbox makes that harmless, as for any crash before an ack.
    """

    def __init__(self, channel):
        self.channel = channel
        self.unfinished = set()  # delivered, not settled
        self.to_ack = set()      # finished, ack not sent yet
        self._flush_scheduled = False

    def delivered(self, tag):
        self.unfinished.add(tag)

    def finished(self, tag):
        self.unfinished.discard(tag)
        self.to_ack.add(tag)
        if not self._flush_scheduled:
            self._flush_scheduled = True
            eventlet.spawn(self.flush)

    def settled_alone(self, tag):
        """The delivery was rejected or requeued by itself: nothing to ack."""
        self.unfinished.discard(tag)

    def flush(self):
        """Send the acks due; never raises (a lost ack means a redelivery, not a loss)."""
        self._flush_scheduled = False
        to_ack, self.to_ack = self.to_ack, set()
        if not to_ack or not self.channel.connection:
            return  # nothing to do, or the connection is gone and the messages requeued
        lowest_unfinished = min(self.unfinished, default=None)
        covered = [tag for tag in to_ack if lowest_unfinished is None or tag < lowest_unfinished]
        try:
            if covered:
                self.channel.basic_ack(max(covered), multiple=True)
            for tag in sorted(to_ack.difference(covered)):
                self.channel.basic_ack(tag)
        except Exception as exc:
            log.warning("acks of %d message(s) not sent (%s: %s); the broker redelivers them",
                        len(to_ack), type(exc).__name__, exc)
