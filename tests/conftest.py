# nameko's containers need eventlet, and it must patch before anything imports socket or ssl.
import eventlet

eventlet.monkey_patch()  # noqa: E402

import pytest  # noqa: E402


@pytest.fixture
def vhost(rabbit_vhost):
    """The ``nameko_topology`` plugin's fresh vhost, under the name these tests have used."""
    return rabbit_vhost
