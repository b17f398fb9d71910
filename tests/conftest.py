# nameko's containers need eventlet, and it must patch before anything imports socket or ssl.
import eventlet

eventlet.monkey_patch()  # noqa: E402

import pytest  # noqa: E402

from nameko_topology.testing.broker import TestVhost  # noqa: E402
from scripts.stack import Stack  # noqa: E402

#: set on a test item that failed (setup, call or teardown): fixtures then print logs
FAILED = pytest.StashKey[bool]()


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    outcome = yield
    if outcome.get_result().failed:
        item.stash[FAILED] = True


@pytest.fixture
def vhost(rabbit_vhost):
    """The ``nameko_topology`` plugin's fresh vhost, under the name these tests have used."""
    return rabbit_vhost


@pytest.fixture(scope="session")
def postgres_server():
    from nameko_topology.testing.postgres import server_available
    ok, why = server_available()
    if not ok:
        pytest.fail(f"PostgreSQL is needed at 127.0.0.1:5432 (POSTGRES_URL): {why}")


@pytest.fixture
def postgres_db(postgres_server):
    """A fresh PostgreSQL database, dropped (connections and all) after the test."""
    from nameko_topology.testing.postgres import TestDatabase
    with TestDatabase() as database:
        yield database


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
