"""``one_write``: the frames written inside the block leave in one socket write (no broker)."""
from types import SimpleNamespace

import pytest

from nameko_topology.compat import one_write


class Transport:
    """py-amqp's transport as far as ``one_write`` sees it: ``write`` goes through ``_write``."""

    def __init__(self):
        self.writes = []
        self._write = self.writes.append

    def write(self, data):
        self._write(data)


def connection_with(transport):
    return SimpleNamespace(connection=SimpleNamespace(transport=transport))


def test_the_frames_of_the_block_go_out_as_one_write_after_it():
    transport = Transport()
    frame_buffer = bytearray(b"frame-1")  # py-amqp reuses one buffer for every frame

    with one_write(connection_with(transport)):
        transport.write(memoryview(frame_buffer))
        frame_buffer[:] = b"frame-2"
        transport.write(memoryview(frame_buffer))
        assert transport.writes == []

    assert transport.writes == [b"frame-1frame-2"]
    transport.write(b"later")
    assert transport.writes == [b"frame-1frame-2", b"later"]  # written at once again


def test_a_block_that_raises_sends_nothing_and_restores_the_transport():
    transport = Transport()

    with pytest.raises(RuntimeError):
        with one_write(connection_with(transport)):
            transport.write(b"half a batch")
            raise RuntimeError("publish failed")

    assert transport.writes == []
    transport.write(b"next")
    assert transport.writes == [b"next"]


def test_a_transport_without_the_hook_writes_as_it_goes():
    class OtherTransport:
        def __init__(self):
            self.writes = []

        def write(self, data):
            self.writes.append(bytes(data))

    transport = OtherTransport()
    with one_write(connection_with(transport)):
        transport.write(b"a")
        assert transport.writes == [b"a"]
    assert transport.writes == [b"a"]
