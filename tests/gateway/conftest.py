"""Fixtures of the gateway's tests against the served gateway."""
import pytest

from nameko_topology.testing.broker import TestVhost
from scripts.stack import Stack


@pytest.fixture(scope="module")
def pipeline(rabbit_base_uri, tmp_path_factory):
    """``pipeline(name, **stack_options)``: the pipeline's processes (a ``Stack``) started in a
    vhost of their own, for the rest of the module; stopped, and the vhost deleted, after it."""
    started = []

    def pipeline(name, **options):
        vhost = TestVhost(rabbit_base_uri).create()
        stack = Stack(vhost.amqp_uri, tmp_path_factory.mktemp(name) / "data", **options)
        started.append((vhost, stack))
        stack.start(timeout=90)
        return stack

    yield pipeline
    for vhost, stack in reversed(started):
        stack.stop()
        vhost.delete()
