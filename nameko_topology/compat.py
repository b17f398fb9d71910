"""Every use of a private part of py-amqp, kombu or nameko, behind one door.

Each has a test against the installed versions (``tests/nameko_topology/test_compat.py``) that fails
loudly when the internal changes, and a fallback where one exists; :func:`active_paths` says
which path is in use, and the declarer logs it once at start-up. The supported versions are
pinned in ``setup.cfg``.
"""
from contextlib import contextmanager
from importlib.metadata import version

import amqp
import amqp.connection
import amqp.transport
import kombu
from nameko import rpc as nameko_rpc


@contextmanager
def one_write(connection):
    """Send the frames that ``connection`` (a kombu ``Connection``) writes inside the block in
    one socket write, when the block ends without an exception.

    py-amqp writes each message with a socket send of its own. On a busy machine each send
    wakes the broker, which may take the CPU before the next one: a batch of 100 then costs 100
    wake-ups on both sides instead of one. py-amqp has no public hook for this; its transports
    write through the private ``_write``, which is swapped for the block. Without that
    attribute (another py-amqp), frames are written as they come.
    """
    transport = connection.connection.transport
    write = getattr(transport, "_write", None)
    if write is None:
        yield
        return
    frames = []
    # py-amqp hands over a view of a buffer it reuses for the next frame: keep a copy
    transport._write = lambda data: frames.append(bytes(data))
    try:
        yield
    finally:
        transport._write = write
    if frames:
        transport.write(b"".join(frames))


def skip_blocked_poll(channel):
    """Stop py-amqp from reading the socket before every publish on ``channel``'s connection.

    py-amqp polls for a ``connection.blocked`` notice before each ``basic_publish`` when the
    negotiated capabilities (its connection's ``client_properties``) include it: a read that
    times out, a third of a publish's CPU. A caller that reads the socket anyway (waiting for
    confirms) sees the notice there. Returns whether the switch was found.
    """
    capabilities = channel.connection.client_properties.get("capabilities")
    if not isinstance(capabilities, dict) or "connection.blocked" not in capabilities:
        return False
    capabilities["connection.blocked"] = False
    return True


def consumer_providers(queue_consumer):
    """The entrypoints registered with a nameko ``QueueConsumer`` (its private
    ``_providers``)."""
    return queue_consumer._providers


def set_consumers(queue_consumer, consumers):
    """Record ``consumers`` (provider -> kombu ``Consumer``) as the ones a nameko
    ``QueueConsumer`` cancels and counts (its private ``_consumers``); returns their values,
    what ``get_consumers`` must return."""
    queue_consumer._consumers = consumers
    return consumers.values()


class Responder(nameko_rpc.Responder):
    """nameko's RPC responder (the reply's shape and serialisation checks), sending through
    ``publisher`` instead of building a publisher per reply: nameko's responder builds one from
    its ``publisher_cls`` attribute inside ``send_response``, which is overridden here."""

    def __init__(self, publisher, exchange, serializer, message):
        super().__init__(None, exchange, serializer, message)
        self.publisher = publisher

    def publisher_cls(self, amqp_uri, ssl=None, login_method=None):
        return self.publisher


def active_paths():
    """One line for the start-up log: the library versions, and which path each internal
    with a fallback takes."""
    one_write_path = ("fast path" if hasattr(amqp.transport.TCPTransport, "_write")
                      else "fallback: a socket write per frame")
    poll_path = ("fast path" if "connection.blocked" in amqp.connection.NEGOTIATE_CAPABILITIES
                 else "fallback: nothing to switch off")
    return (f"amqp {amqp.__version__}, kombu {kombu.__version__}, nameko "
            f"{version('nameko')}: a batch of publishes in one write: {one_write_path}; "
            f"no blocked-poll per publish: {poll_path}")
