"""Publishing a batch of messages and waiting for all their confirms at once.

Waiting for each publisher confirm before sending the next message caps a publisher at one
message per broker round trip (a few hundred a second here); a channel in confirm mode may have
any number of messages unconfirmed, and the broker acks them in order, often several in one
``basic.ack(multiple=True)``.
"""
import socket
import time
from dataclasses import dataclass, field

from kombu import Connection

from nameko_topology.compat import one_write, skip_blocked_poll
from nameko_topology.exceptions import CONNECTION_ERRORS
from nameko_topology.messages import JSON_CONTENT_TYPE
from nameko_topology.uris import connect

PERSISTENT = 2



@dataclass
class BatchOutcome:
    """What the broker did with each message of a batch, by message id."""

    confirmed: set = field(default_factory=set)
    nacked: set = field(default_factory=set)
    #: unroutable (mandatory) messages: message id -> the broker's reply text
    returned: dict = field(default_factory=dict)


class HeldChannel:
    """One broker connection and channel, opened on first use and again after a failure.

    For a publisher that sends often: opening a connection (or taking one from kombu's pool)
    per message costs more CPU than the publish. Not thread-safe: its owner serialises use.

    :Parameters:
        amqp_uri: the broker.
        confirms: put the channel in confirm mode.
        on_open: called with each newly opened channel.
        ssl, login_method: as nameko's ``AMQP_SSL`` and ``LOGIN_METHOD`` config.
    """

    def __init__(self, amqp_uri, confirms=False, on_open=None, ssl=None, login_method=None):
        self.amqp_uri = amqp_uri
        self.ssl = ssl
        self.login_method = login_method
        self.confirms = confirms
        self.on_open = on_open
        self.connection = None
        self._channel = None

    def get(self):
        """The open channel; opens a connection first if there is none, or it broke."""
        if self._channel is None or not self._channel.is_open:
            self.close()
            self.connection = Connection(self.amqp_uri, connect_timeout=10, ssl=self.ssl,
                                         login_method=self.login_method)
            connect(self.connection)
            self._channel = self.connection.channel()
            if self.confirms:
                self._channel.confirm_select()
            if self.on_open is not None:
                self.on_open(self._channel)
        return self._channel

    def close(self):
        if self.connection is not None:
            try:
                self.connection.release()
            except Exception:
                pass  # closing a broken connection
        self.connection = self._channel = None


class BatchPublisher:
    """Publishes persistent, mandatory JSON messages in batches over one confirm-mode channel.

    Not thread-safe: one green thread (the outbox relay) owns it. A broken connection is
    reopened by the next :meth:`publish`.
    """

    def __init__(self, amqp_uri, confirm_timeout=30):
        self.confirm_timeout = confirm_timeout
        self._held = HeldChannel(amqp_uri, confirms=True, on_open=self._opened)

    def publish(self, messages):
        """Publish ``messages`` (dicts of exchange, routing_key, body, message_id,
        correlation_id, type, and optionally headers) and wait for every confirm; return a :class:`BatchOutcome`.

        Raises on a connection error or when confirms do not arrive in ``confirm_timeout``:
        the caller cannot know which messages arrived and must treat all as unconfirmed.
        After a nack the channel is closed too, and the next batch goes out on a fresh one.
        """
        try:
            outcome = self._publish(messages)
        except Exception:
            self.close()
            raise
        if outcome.nacked:
            # A channel that published to a quorum queue while its leader's node was dying
            # keeps nacking that queue after a new leader is elected (seen on RabbitMQ 3.10,
            # tests/cluster); a fresh channel looks the leader up again.
            self.close()
        return outcome

    def _publish(self, messages):
        channel = self._live_channel()
        outcome = BatchOutcome()
        pending = {}  # delivery tag -> message id
        returned = {}

        def on_ack(tag, multiple):
            for settled in _settled(pending, tag, multiple):
                outcome.confirmed.add(pending.pop(settled))

        def on_nack(tag, multiple):
            for settled in _settled(pending, tag, multiple):
                outcome.nacked.add(pending.pop(settled))

        def on_return(exc, exchange, routing_key, message):
            returned[message.properties.get("message_id")] = str(exc)

        channel.events["basic_ack"].add(on_ack)
        channel.events["basic_nack"].add(on_nack)
        channel.events["basic_return"].add(on_return)
        try:
            with one_write(self._held.connection):
                for message in messages:
                    self._next_tag += 1
                    pending[self._next_tag] = message["message_id"]
                    channel.basic_publish(
                        channel.prepare_message(
                            message["body"], content_type=JSON_CONTENT_TYPE,
                            content_encoding="utf-8", headers=message.get("headers"),
                            properties={"delivery_mode": PERSISTENT,
                                        "message_id": message["message_id"],
                                        "correlation_id": message["correlation_id"],
                                        "type": message["type"]}),
                        exchange=message["exchange"], routing_key=message["routing_key"],
                        mandatory=True)
            deadline = time.monotonic() + self.confirm_timeout
            while pending:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    raise socket.timeout(f"{len(pending)} publisher confirms not received in "
                                         f"{self.confirm_timeout}s")
                self._held.connection.drain_events(timeout=remaining)
        finally:
            channel.events["basic_ack"].discard(on_ack)
            channel.events["basic_nack"].discard(on_nack)
            channel.events["basic_return"].discard(on_return)
        # the broker acks an unroutable message right after returning it
        outcome.confirmed -= returned.keys()
        outcome.returned = returned
        return outcome

    def _live_channel(self):
        """The held channel, reopened first if the broker has closed its connection.

        A connection the broker closed while the relay idled still takes writes, and the
        batch would learn of it only from confirms that never come. Reading what the broker
        sent meanwhile finds its close, once per batch rather than once per message.
        """
        channel = self._held.get()
        try:
            self._held.connection.drain_events(timeout=0)
        except socket.timeout:
            return channel  # nothing was sent to us: alive
        except CONNECTION_ERRORS:
            self._held.close()
            return self._held.get()
        return channel

    def _opened(self, channel):
        self._next_tag = 0  # delivery tags count from 1 on each channel
        # a batch reads the socket anyway while it waits for its confirms, where a blocked
        # notice is seen as well
        skip_blocked_poll(channel)

    def close(self):
        self._held.close()


def _settled(pending, tag, multiple):
    if multiple:
        return [pending_tag for pending_tag in pending if pending_tag <= tag]
    return [tag] if tag in pending else []
