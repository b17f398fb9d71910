"""Reading a queue from head to tail without removing anything.

Messages are consumed unacknowledged on a channel of their own; whatever is not acked goes back
when that channel closes, to where it was (classic queues), or in the order it was read (quorum
queues: see the README notes). A consumer with a prefetch window reads far faster than one
``basic.get`` round trip per message, but a window full of unacked messages stops it: so when
the current consumer holds a full window, it is cancelled (keeping its messages) and a new one
takes the next window.

Order: a classic queue puts requeued messages back where they were. A quorum queue (RabbitMQ
3.10) puts them back in order only if its consumer held every message when the channel
closed: measured, 1,000 messages of which 10 were read came back with those 10 last, and
3,000 read in windows of 100 came back starting at the 2,401st. So on a quorum queue
(``whole=True``) one consumer takes the whole queue, and closing first takes delivery of what
was not read yet. AMQP's largest prefetch, 65,535, bounds that: a longer quorum queue may
change its order.
"""
import collections
import socket

#: the largest prefetch count AMQP can carry (a short)
MAX_WINDOW = 65535
#: seconds without a delivery after which the queue counts as read to its end (another reader
#: may hold some of its messages)
IDLE_TIMEOUT = 1.0


class QueueReader:
    """The messages ready in ``queue`` when it is opened, head first, on ``connection`` (a
    connected kombu ``Connection``); nothing is removed unless :meth:`ack` is called.

    Use it as a context manager: leaving it closes the channel, and the broker puts back every
    message not acked. Messages that arrive after it was opened are not read.
    """

    def __init__(self, connection, queue, window=None, whole=False, idle_timeout=IDLE_TIMEOUT):
        self.connection = connection
        self.queue = queue
        self.window = window
        self.whole = whole
        self.idle_timeout = idle_timeout
        self.channel = None
        self.count = 0
        self._arrived = collections.deque()
        self._consumer = None
        self._held = 0  # unacked messages of the current consumer
        self._taken = 0  # messages handed out

    def __enter__(self):
        self.channel = self.connection.channel()
        self.count = self.channel.queue_declare(self.queue, passive=True).message_count
        if self.window is None or self.whole:  # one consumer for the whole queue
            self.window = min(max(self.count, 1), MAX_WINDOW)
        self.channel.basic_qos(0, min(self.window, MAX_WINDOW), False)
        return self

    def __exit__(self, *exc_info):
        self.close()

    def close(self):
        """Close the channel: the broker puts back every message read and not acked."""
        if self.channel is not None:
            try:
                if self.whole:  # see the module's doc: the consumer must hold them all
                    while self._taken < self.count and self._next() is not None:
                        pass
                if self._consumer is not None:  # no more deliveries to a closing channel
                    self.channel.basic_cancel(self._consumer)
                self.channel.close()
            except (OSError, *self.connection.connection_errors, *self.connection.channel_errors):
                pass  # a dead connection puts the messages back all the same
            self.channel = None

    def __iter__(self):
        """py-amqp messages, head first, at most :attr:`count` of them."""
        while self._taken < self.count:
            message = self._next()
            if message is None:
                return
            yield message

    def ack(self, message):
        """Remove ``message`` from the queue."""
        self.channel.basic_ack(message.delivery_tag)
        if message.delivery_info.get("consumer_tag") == self._consumer:
            self._held -= 1

    def _next(self):
        while not self._arrived:
            if self._consumer is None or self._held >= self.window:
                self._roll()
            try:
                self.connection.drain_events(timeout=self.idle_timeout)
            except socket.timeout:
                return None
        self._taken += 1
        return self._arrived.popleft()

    def _roll(self):
        # a cancelled consumer's unacked messages stay on the channel, unacked: the next
        # consumer gets the messages after them, with a window of its own
        if self._consumer is not None:
            self.channel.basic_cancel(self._consumer)
        self._held = 0
        self._consumer = self.channel.basic_consume(
            self.queue, no_ack=False, callback=self._on_message)

    def _on_message(self, message):
        if message.delivery_info.get("consumer_tag") == self._consumer:
            self._held += 1
        self._arrived.append(message)
